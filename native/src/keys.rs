//! State keys into bytes, as `runtime/state/serde.py` encodes them.
//!
//! `KeyEncoder` encodes the keys it can (None, str, int within 64 bits, bool, bytes,
//! tuples of those) and calls the Python encoder it was built with for the rest, which
//! encodes wide ints and raises the errors. The format is serde.py's: one tag byte per
//! element, strs and bytes escaped (`00` -> `00 FF`) and terminated by `00`, ints
//! ordered by value.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyString, PyTuple};

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
