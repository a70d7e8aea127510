//! Shoal's native Avro decoder (and, in `fold`, the columnar window fold; in `keys`, the
//! state key encoder and decoder; in `check`, the restore check of changelog entries).
//!
//! A `Decoder` is built once per writer schema from a small program that Python
//! compiles from the parsed schema (`connectors/avro/native.py`), then decodes whole
//! batches of framed records into Python dicts, as fastavro would with the same
//! schema. It is strict: a record it cannot decode exactly (bad bytes, a header it was
//! not built for, a non-bytes item) is reported by index and never guessed at; the
//! caller decodes those with fastavro, which gives the value or the error message.
//! Nothing in the data is executed; every read is bounds-checked.

mod check;
mod fold;
mod keys;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

/// One node of a schema program.
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Fixed(usize),
    Enum(Vec<Py<PyString>>),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Record(Vec<(Py<PyString>, Node)>),
    /// A named type, defined once in `Decoder::named`.
    Ref(usize),
}

/// Why a body did not decode (only whether matters: the caller asks fastavro why).
struct Bad;

type R<T> = Result<T, Bad>;

/// How many array and map items one body may hold beyond one per byte of the body.
/// Items that take bytes can never exceed one per byte; items of no bytes (null, a
/// fixed of size 0, a record of such) can: a crafted block count would otherwise build
/// billions of them. The Python side (`connectors/avro/limits.py`) keeps the same rule.
const ITEM_ALLOWANCE: u64 = 65_536;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Array and map items this body may still hold.
    items_left: u64,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or(Bad)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Bad)?;
        let out = self.buf.get(self.pos..end).ok_or(Bad)?;
        self.pos = end;
        Ok(out)
    }

    /// A zig-zag varint of at most 10 bytes (64 bits).
    fn long(&mut self) -> R<i64> {
        let mut acc: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift == 63 && (b & 0x7e) != 0 {
                return Err(Bad); // beyond 64 bits
            }
            acc |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(Bad);
            }
        }
        Ok(((acc >> 1) as i64) ^ -((acc & 1) as i64))
    }

    fn length(&mut self) -> R<usize> {
        let n = self.long()?;
        if n < 0 {
            return Err(Bad);
        }
        usize::try_from(n).map_err(|_| Bad)
    }
}

#[pyclass(frozen)]
struct Decoder {
    root: Node,
    named: Vec<Node>,
}

fn compile(py: Python<'_>, program: &Bound<'_, PyAny>, named: &mut Vec<Option<Node>>) -> PyResult<Node> {
    if let Ok(name) = program.extract::<String>() {
        return Ok(match name.as_str() {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int,
            "long" => Node::Long,
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::Str,
            other => return Err(PyValueError::new_err(format!("unknown type {other}"))),
        });
    }
    let parts = program.downcast::<PyTuple>()?;
    let tag: String = parts.get_item(0)?.extract()?;
    let arg = parts.get_item(1)?;
    Ok(match tag.as_str() {
        "fixed" => Node::Fixed(arg.extract()?),
        "enum" => {
            let symbols: Vec<String> = arg.extract()?;
            Node::Enum(symbols.iter().map(|s| PyString::intern(py, s).unbind()).collect())
        }
        "array" => Node::Array(Box::new(compile(py, &arg, named)?)),
        "map" => Node::Map(Box::new(compile(py, &arg, named)?)),
        "union" => {
            let mut branches = Vec::new();
            for b in arg.try_iter()? {
                branches.push(compile(py, &b?, named)?);
            }
            Node::Union(branches)
        }
        "record" => {
            let mut fields = Vec::new();
            for f in arg.try_iter()? {
                let f = f?;
                let pair = f.downcast::<PyTuple>()?;
                let name: String = pair.get_item(0)?.extract()?;
                let node = compile(py, &pair.get_item(1)?, named)?;
                fields.push((PyString::intern(py, &name).unbind(), node));
            }
            Node::Record(fields)
        }
        "define" => {
            // ("define", (index, node)): a named type's one definition
            let pair = arg.downcast::<PyTuple>()?;
            let index: usize = pair.get_item(0)?.extract()?;
            if index >= named.len() {
                named.resize_with(index + 1, || None);
            }
            let node = compile(py, &pair.get_item(1)?, named)?;
            named[index] = Some(node);
            Node::Ref(index)
        }
        "ref" => Node::Ref(arg.extract()?),
        other => return Err(PyValueError::new_err(format!("unknown node {other}"))),
    })
}

impl Decoder {
    fn read<'py>(&self, py: Python<'py>, node: &Node, r: &mut Reader<'_>) -> R<Bound<'py, PyAny>> {
        Ok(match node {
            Node::Null => py.None().into_bound(py),
            Node::Boolean => match r.byte()? {
                0 => false.into_pyobject(py).map_err(|_| Bad)?.to_owned().into_any(),
                1 => true.into_pyobject(py).map_err(|_| Bad)?.to_owned().into_any(),
                _ => return Err(Bad),
            },
            Node::Int | Node::Long => r.long()?.into_pyobject(py).map_err(|_| Bad)?.into_any(),
            Node::Float => {
                let raw = r.take(4)?;
                let v = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                (v as f64).into_pyobject(py).map_err(|_| Bad)?.into_any()
            }
            Node::Double => {
                let raw = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(raw);
                f64::from_le_bytes(a).into_pyobject(py).map_err(|_| Bad)?.into_any()
            }
            Node::Bytes => {
                let n = r.length()?;
                PyBytes::new(py, r.take(n)?).into_any()
            }
            Node::Str => {
                let n = r.length()?;
                let s = std::str::from_utf8(r.take(n)?).map_err(|_| Bad)?;
                PyString::new(py, s).into_any()
            }
            Node::Fixed(n) => PyBytes::new(py, r.take(*n)?).into_any(),
            Node::Enum(symbols) => {
                let i = usize::try_from(r.long()?).map_err(|_| Bad)?;
                symbols.get(i).ok_or(Bad)?.bind(py).clone().into_any()
            }
            Node::Union(branches) => {
                let i = usize::try_from(r.long()?).map_err(|_| Bad)?;
                self.read(py, branches.get(i).ok_or(Bad)?, r)?
            }
            Node::Record(fields) => {
                let d = PyDict::new(py);
                for (name, field) in fields {
                    let v = self.read(py, field, r)?;
                    d.set_item(name.bind(py), v).map_err(|_| Bad)?;
                }
                d.into_any()
            }
            Node::Array(item) => {
                let out = PyList::empty(py);
                loop {
                    let count = self.block(r)?;
                    if count == 0 {
                        break;
                    }
                    for _ in 0..count {
                        out.append(self.read(py, item, r)?).map_err(|_| Bad)?;
                    }
                }
                out.into_any()
            }
            Node::Map(value) => {
                let d = PyDict::new(py);
                loop {
                    let count = self.block(r)?;
                    if count == 0 {
                        break;
                    }
                    for _ in 0..count {
                        let n = r.length()?;
                        let k = std::str::from_utf8(r.take(n)?).map_err(|_| Bad)?;
                        let v = self.read(py, value, r)?;
                        d.set_item(PyString::new(py, k), v).map_err(|_| Bad)?;
                    }
                }
                d.into_any()
            }
            Node::Ref(i) => self.read(py, self.named.get(*i).ok_or(Bad)?, r)?,
        })
    }

    /// The item count of the next array or map block (a negative count is followed
    /// by the block's size in bytes, which is not needed).
    /// Every block's count is charged to the body's item allowance before any item is
    /// built.
    fn block(&self, r: &mut Reader<'_>) -> R<u64> {
        let count = r.long()?;
        let count = if count < 0 {
            r.long()?;
            count.unsigned_abs()
        } else {
            count as u64
        };
        r.items_left = r.items_left.checked_sub(count).ok_or(Bad)?;
        Ok(count)
    }
}

#[pymethods]
impl Decoder {
    /// Build from a schema program (see `connectors/avro/native.py`).
    #[new]
    fn new(py: Python<'_>, program: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut named: Vec<Option<Node>> = Vec::new();
        let root = compile(py, program, &mut named)?;
        let mut out = Vec::with_capacity(named.len());
        for (i, n) in named.into_iter().enumerate() {
            out.push(n.ok_or_else(|| PyValueError::new_err(format!("named type {i} is never defined")))?);
        }
        Ok(Decoder { root, named: out })
    }

    /// Decode the bodies of framed records that start with `header`.
    ///
    /// Returns `(values, failed)`: one value per record (`None` where it failed) and
    /// the indices of the records that did not decode exactly (to be decoded by the
    /// caller's other path).
    fn decode_many<'py>(
        &self,
        py: Python<'py>,
        datas: &Bound<'py, PyList>,
        header: &[u8],
    ) -> PyResult<(Bound<'py, PyList>, Vec<usize>)> {
        let values = PyList::empty(py);
        let mut failed = Vec::new();
        for (index, item) in datas.iter().enumerate() {
            let decoded = match item.downcast::<PyBytes>() {
                Ok(b) => {
                    let data = b.as_bytes();
                    if data.len() >= header.len() && &data[..header.len()] == header {
                        let body = (data.len() - header.len()) as u64;
                        let mut r = Reader {
                            buf: data,
                            pos: header.len(),
                            items_left: body.saturating_add(ITEM_ALLOWANCE),
                        };
                        match self.read(py, &self.root, &mut r) {
                            Ok(v) if r.pos == data.len() => Some(v),
                            _ => None,
                        }
                    } else {
                        None
                    }
                }
                Err(_) => None,
            };
            match decoded {
                Some(v) => values.append(v)?,
                None => {
                    failed.push(index);
                    values.append(py.None())?;
                }
            }
        }
        Ok((values, failed))
    }
}

#[pymodule]
fn shoal_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decoder>()?;
    m.add_class::<fold::WindowFold>()?;
    m.add_class::<keys::KeyEncoder>()?;
    m.add_class::<keys::KeyDecoder>()?;
    m.add_function(wrap_pyfunction!(check::unvouched, m)?)?;
    Ok(())
}
