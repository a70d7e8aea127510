//! State keys to bytes and back, as `runtime/state/serde.py` encodes and decodes them.
//!
//! `KeyEncoder` encodes the keys it can (None, str, int within 64 bits, bool, bytes,
//! tuples of those) and calls the Python encoder it was built with for the rest, which
//! encodes wide ints and raises the errors. `KeyDecoder` decodes what it can read
//! exactly and calls the Python decoder for the rest (ints wider than 8 bytes, strs
//! with encoded surrogates, deep nesting) and for bytes that are no key, which raises
//! the error. The format is serde.py's: one tag byte per
//! element, strs and bytes escaped (`00` -> `00 FF`) and terminated by `00`, ints
//! ordered by value.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyString, PyTuple};

const NONE: u8 = 0x01;
const BYTES: u8 = 0x02;
const STR: u8 = 0x03;
const TUPLE: u8 = 0x05;
const END: u8 = 0x00;
const ZERO: u8 = 0x20;

fn escaped(out: &mut Vec<u8>, tag: u8, raw: &[u8]) {
    out.push(tag);
    for &b in raw {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.push(END);
}

fn int(out: &mut Vec<u8>, v: i64) {
    if v == 0 {
        out.push(ZERO);
        return;
    }
    let magnitude = v.unsigned_abs();
    let size = (64 - magnitude.leading_zeros()).div_ceil(8) as usize;
    let be = if v > 0 {
        magnitude.to_be_bytes()
    } else {
        // ones' complement of the magnitude within `size` bytes
        let full = if size == 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
        (full - magnitude).to_be_bytes()
    };
    out.push(if v > 0 { ZERO + size as u8 } else { ZERO - size as u8 });
    out.extend_from_slice(&be[8 - size..]);
}

/// Encode one element; `false` when the Python encoder must do the whole key.
fn element(out: &mut Vec<u8>, key: &Bound<'_, PyAny>) -> bool {
    if key.is_none() {
        out.push(NONE);
    } else if let Ok(s) = key.downcast_exact::<PyString>() {
        match s.to_str() {
            Ok(text) => escaped(out, STR, text.as_bytes()),
            Err(_) => return false, // lone surrogates: Python's surrogatepass
        }
    } else if key.is_exact_instance_of::<PyInt>() || key.is_exact_instance_of::<PyBool>() {
        match key.extract::<i64>() {
            Ok(v) => int(out, v),
            Err(_) => return false, // beyond 64 bits
        }
    } else if let Ok(b) = key.downcast_exact::<PyBytes>() {
        escaped(out, BYTES, b.as_bytes());
    } else if let Ok(t) = key.downcast_exact::<PyTuple>() {
        out.push(TUPLE);
        for item in t.iter() {
            if !element(out, &item) {
                return false;
            }
        }
        out.push(END);
    } else {
        return false;
    }
    true
}

#[pyclass(frozen, module = "shoal_native")]
pub struct KeyEncoder {
    fallback: PyObject,
}

#[pymethods]
impl KeyEncoder {
    /// An encoder that calls `fallback(key)` for keys it does not encode itself.
    #[new]
    fn new(fallback: PyObject) -> Self {
        KeyEncoder { fallback }
    }

    /// Pickled as the encoder of the same fallback (which pickles by reference).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (PyObject,))> {
        let py = slf.py();
        Ok((slf.get_type().into_any(), (slf.get().fallback.clone_ref(py),)))
    }

    /// The key's bytes.
    fn __call__<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let mut out = Vec::with_capacity(32);
        if element(&mut out, key) {
            return Ok(PyBytes::new(py, &out).into_any());
        }
        self.fallback.bind(py).call1((key,))
    }
}

/// Too deep, or not a key this decoder reads: the Python decoder decides.
struct Unread;

/// Content up to its terminator, unescaped; the position after the terminator.
fn unescape(data: &[u8], mut pos: usize) -> Result<(Vec<u8>, usize), Unread> {
    let mut out = Vec::new();
    loop {
        let b = *data.get(pos).ok_or(Unread)?;
        if b == END {
            if data.get(pos + 1) == Some(&0xff) {
                out.push(0);
                pos += 2;
                continue;
            }
            return Ok((out, pos + 1));
        }
        out.push(b);
        pos += 1;
    }
}

fn decode_at<'py>(py: Python<'py>, data: &[u8], pos: usize, depth: u32) -> Result<(Bound<'py, PyAny>, usize), Unread> {
    if depth > 64 {
        return Err(Unread);
    }
    let tag = *data.get(pos).ok_or(Unread)?;
    let pos = pos + 1;
    match tag {
        STR => {
            let (raw, next) = unescape(data, pos)?;
            let text = std::str::from_utf8(&raw).map_err(|_| Unread)?;
            Ok((PyString::new(py, text).into_any(), next))
        }
        BYTES => {
            let (raw, next) = unescape(data, pos)?;
            Ok((PyBytes::new(py, &raw).into_any(), next))
        }
        NONE => Ok((py.None().into_bound(py), pos)),
        TUPLE => {
            let items = PyList::empty(py);
            let mut at = pos;
            while *data.get(at).ok_or(Unread)? != END {
                let (item, next) = decode_at(py, data, at, depth + 1)?;
                items.append(item).map_err(|_| Unread)?;
                at = next;
            }
            Ok((PyTuple::new(py, items).map_err(|_| Unread)?.into_any(), at + 1))
        }
        ZERO => Ok((PyInt::new(py, 0i64).into_any(), pos)),
        t if (ZERO - 8..=ZERO + 8).contains(&t) => {
            let (value, next) = read_int(data, pos, t)?;
            let obj = match value {
                Int::Signed(v) => PyInt::new(py, v).into_any(),
                Int::Unsigned(v) => PyInt::new(py, v).into_any(),
            };
            Ok((obj, next))
        }
        _ => Err(Unread),
    }
}

enum Int {
    Signed(i64),
    Unsigned(u64),
}

/// The int of tag `t` (not `ZERO`) whose body starts at `pos`, and the position after it.
fn read_int(data: &[u8], pos: usize, t: u8) -> Result<(Int, usize), Unread> {
    let size = usize::from(t.abs_diff(ZERO));
    let body = data.get(pos..pos + size).ok_or(Unread)?;
    let mut be = [0u8; 8];
    be[8 - size..].copy_from_slice(body);
    let number = u64::from_be_bytes(be);
    let value: i128 = if t > ZERO {
        i128::from(number)
    } else {
        let full: i128 = (1i128 << (8 * size)) - 1;
        -(full - i128::from(number))
    };
    let int = match i64::try_from(value) {
        Ok(v) => Int::Signed(v),
        Err(_) => Int::Unsigned(u64::try_from(value).map_err(|_| Unread)?),
    };
    Ok((int, pos + size))
}

/// Where the key element at `pos` ends, if `decode_at` would read it (builds nothing).
fn element_end(data: &[u8], pos: usize, depth: u32) -> Result<usize, Unread> {
    if depth > 64 {
        return Err(Unread);
    }
    let tag = *data.get(pos).ok_or(Unread)?;
    let pos = pos + 1;
    match tag {
        STR => {
            let (raw, next) = unescape(data, pos)?;
            std::str::from_utf8(&raw).map_err(|_| Unread)?;
            Ok(next)
        }
        BYTES => Ok(unescape(data, pos)?.1),
        NONE | ZERO => Ok(pos),
        TUPLE => {
            let mut at = pos;
            while *data.get(at).ok_or(Unread)? != END {
                at = element_end(data, at, depth + 1)?;
            }
            Ok(at + 1)
        }
        t if (ZERO - 8..=ZERO + 8).contains(&t) => Ok(read_int(data, pos, t)?.1),
        _ => Err(Unread),
    }
}

/// Whether `data` is a whole key the native decoder reads (so the Python one does too).
pub(crate) fn is_key(data: &[u8]) -> bool {
    matches!(element_end(data, 0, 0), Ok(end) if end == data.len())
}

#[pyclass(frozen, module = "shoal_native")]
pub struct KeyDecoder {
    fallback: PyObject,
}

#[pymethods]
impl KeyDecoder {
    /// A decoder that calls `fallback(data)` for what it does not decode itself.
    #[new]
    fn new(fallback: PyObject) -> Self {
        KeyDecoder { fallback }
    }

    /// Pickled as the decoder of the same fallback (which pickles by reference).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (PyObject,))> {
        let py = slf.py();
        Ok((slf.get_type().into_any(), (slf.get().fallback.clone_ref(py),)))
    }

    /// The key encoded in `data`.
    fn __call__<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(b) = data.downcast_exact::<PyBytes>() {
            let raw = b.as_bytes();
            if let Ok((key, end)) = decode_at(py, raw, 0, 0) {
                if end == raw.len() {
                    return Ok(key);
                }
            }
        }
        self.fallback.bind(py).call1((data,))
    }
}
