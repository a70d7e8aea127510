//! Shoal's columnar window fold: a batch of decoded records into (key, window) groups.
//!
//! A `WindowFold` runs the part of a window step that needs no Python per record when
//! the job says what it reads with field expressions: it reads each record's event
//! time, key and aggregated number, checks the event time's range, finds the record's
//! windows (tumbling or hopping: `size`, `slide`), tells late records apart and groups
//! the rest by `(key, start, end)` in the order the row path meets them. `fold` then
//! folds each group's numbers into the accumulator the caller read from state, exactly
//! as the Python aggregate would, one number after another.
//!
//! Anything outside what it can do exactly (a record that is not a dict, a missing
//! field, an event time out of range, a key that is neither a str nor an int, a number
//! of another type, an integer beyond 64 bits, mixed ints and floats where order or
//! type would show) makes the call return `None`: the caller then runs the whole batch
//! on the row path, which gives the values, dead letters and messages.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Count,
    Sum,
    Min,
    Max,
    Mean,
}

#[derive(Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

#[derive(Hash, PartialEq, Eq)]
enum Key {
    S(String),
    I(i64),
}

/// Not exactly foldable here: the caller runs the batch on the row path.
struct Out;

fn path_of(py: Python<'_>, parts: Vec<String>) -> Vec<Py<PyString>> {
    parts.iter().map(|p| PyString::intern(py, p).unbind()).collect()
}

/// `record[a][b]...` on plain dicts only.
fn lookup<'py>(record: &Bound<'py, PyAny>, path: &[Py<PyString>]) -> Result<Bound<'py, PyAny>, Out> {
    let py = record.py();
    let mut cur = record.clone();
    for part in path {
        let d = cur.downcast_exact::<PyDict>().map_err(|_| Out)?;
        cur = d.get_item(part.bind(py)).map_err(|_| Out)?.ok_or(Out)?;
    }
    Ok(cur)
}

fn exact_i64(v: &Bound<'_, PyAny>) -> Result<i64, Out> {
    if !v.is_exact_instance_of::<PyInt>() {
        return Err(Out);
    }
    v.extract::<i64>().map_err(|_| Out)
}

fn number(v: &Bound<'_, PyAny>) -> Result<Num, Out> {
    if v.is_exact_instance_of::<PyFloat>() {
        return Ok(Num::F(v.downcast_exact::<PyFloat>().map_err(|_| Out)?.value()));
    }
    Ok(Num::I(exact_i64(v)?))
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::I(i) => i as f64, // rounds to nearest, ties to even: as Python's float(int)
        Num::F(f) => f,
    }
}

#[pyclass(module = "shoal_native")]
pub struct WindowFold {
    ts_path: Vec<Py<PyString>>,
    key_path: Vec<Py<PyString>>,
    value_path: Option<Vec<Py<PyString>>>,
    kind: Kind,
    size: i64,
    slide: i64,
    lateness: i64,
    /// The numbers of each group of the last `group` call, in record order.
    numbers: Vec<Vec<Num>>,
    /// Records per group of the last `group` call.
    counts: Vec<i64>,
}

type Grouped<'py> = (i64, Bound<'py, PyList>, Bound<'py, PyList>);

impl WindowFold {
    fn run<'py>(&mut self, py: Python<'py>, values: &Bound<'py, PyList>, lo: i64, hi: i64, clamp: bool, wm: i64) -> Result<Grouped<'py>, Out> {
        let late = PyList::empty(py);
        let groups = PyList::empty(py);
        let mut index: HashMap<Key, HashMap<i64, usize>> = HashMap::new();
        self.numbers.clear();
        self.counts.clear();
        let (size, slide) = (self.size as i128, self.slide as i128);
        let (lateness, wm) = (self.lateness as i128, wm as i128);
        let mut max_ts = i64::MIN;
        let mut kinds = (false, false); // (ints seen, floats seen)
        for (i, v) in values.iter().enumerate() {
            let mut t = exact_i64(&lookup(&v, &self.ts_path)?)?;
            if t < lo {
                return Err(Out);
            }
            if t > hi {
                if !clamp {
                    return Err(Out);
                }
                t = hi;
            }
            let key_obj = lookup(&v, &self.key_path)?;
            let key = if key_obj.is_exact_instance_of::<PyString>() {
                Key::S(key_obj.downcast_exact::<PyString>().map_err(|_| Out)?.to_str().map_err(|_| Out)?.to_owned())
            } else {
                Key::I(exact_i64(&key_obj)?)
            };
            if t > max_ts {
                max_ts = t;
            }
            let t128 = t as i128;
            let last = t128 - t128.rem_euclid(slide);
            if last + size + lateness <= wm {
                late.append((i, key_obj, t)).map_err(|_| Out)?;
                continue;
            }
            let num = match self.kind {
                Kind::Count => None,
                _ => {
                    let raw = match &self.value_path {
                        Some(p) => lookup(&v, p)?,
                        None => v.clone(),
                    };
                    let n = number(&raw)?;
                    match n {
                        Num::I(_) => kinds.0 = true,
                        Num::F(_) => kinds.1 = true,
                    }
                    Some(n)
                }
            };
            let per_key = index.entry(key).or_default();
            let mut start = last - size + slide;
            while start <= last {
                let end = start + size;
                if end + lateness > wm {
                    let (s64, e64) = (i64::try_from(start).map_err(|_| Out)?, i64::try_from(end).map_err(|_| Out)?);
                    let g = match per_key.get(&s64) {
                        Some(g) => *g,
                        None => {
                            let g = self.counts.len();
                            let sk = PyTuple::new(py, [key_obj.clone(), PyInt::new(py, s64).into_any(), PyInt::new(py, e64).into_any()]).map_err(|_| Out)?;
                            groups.append(sk).map_err(|_| Out)?;
                            per_key.insert(s64, g);
                            self.counts.push(0);
                            self.numbers.push(Vec::new());
                            g
                        }
                    };
                    self.counts[g] += 1;
                    if let Some(n) = num {
                        self.numbers[g].push(n);
                    }
                }
                start += slide;
            }
        }
        // Min and max compare ints and floats exactly in Python; one kind per batch here.
        if matches!(self.kind, Kind::Min | Kind::Max) && kinds.0 && kinds.1 {
            return Err(Out);
        }
        Ok((max_ts, late, groups))
    }

    fn fold_one<'py>(&self, py: Python<'py>, g: usize, acc: &Bound<'py, PyAny>) -> Result<Bound<'py, PyAny>, Out> {
        let nums = &self.numbers[g];
        match self.kind {
            Kind::Count => {
                let a = exact_i64(acc)?;
                let n = a.checked_add(self.counts[g]).ok_or(Out)?;
                Ok(PyInt::new(py, n).into_any())
            }
            Kind::Sum => {
                // Python: acc + float(v), one after another
                let mut a = as_f64(number(acc)?);
                for n in nums {
                    a += as_f64(*n);
                }
                Ok(PyFloat::new(py, a).into_any())
            }
            Kind::Mean => {
                // Python: acc[0] += v; acc[1] += 1 (acc[0] a float from create)
                let list = acc.downcast_exact::<PyList>().map_err(|_| Out)?;
                if list.len() != 2 {
                    return Err(Out);
                }
                let s0 = list.get_item(0).map_err(|_| Out)?;
                if !s0.is_exact_instance_of::<PyFloat>() {
                    return Err(Out);
                }
                let mut s = as_f64(number(&s0)?);
                for n in nums {
                    s += as_f64(*n);
                }
                let c = exact_i64(&list.get_item(1).map_err(|_| Out)?)?.checked_add(self.counts[g]).ok_or(Out)?;
                let out = PyList::new(py, [PyFloat::new(py, s).into_any(), PyInt::new(py, c).into_any()]).map_err(|_| Out)?;
                Ok(out.into_any())
            }
            Kind::Min | Kind::Max => {
                let smaller = self.kind == Kind::Min;
                let mut best: Option<Num> = if acc.is_none() { None } else { Some(number(acc)?) };
                for n in nums {
                    best = Some(match (best, *n) {
                        (None, v) => v,
                        (Some(Num::I(a)), Num::I(v)) => {
                            if (smaller && v < a) || (!smaller && v > a) { Num::I(v) } else { Num::I(a) }
                        }
                        (Some(Num::F(a)), Num::F(v)) => {
                            if (smaller && v < a) || (!smaller && v > a) { Num::F(v) } else { Num::F(a) }
                        }
                        _ => return Err(Out), // an int against a float: Python's exact rules
                    });
                }
                match best {
                    None => Ok(py.None().into_bound(py)),
                    Some(Num::I(i)) => Ok(PyInt::new(py, i).into_any()),
                    Some(Num::F(f)) => Ok(PyFloat::new(py, f).into_any()),
                }
            }
        }
    }
}

#[pymethods]
impl WindowFold {
    /// A fold for one window step: field paths of the event time, the key and the
    /// aggregated number (`None`: the record itself, or nothing for a count), the
    /// aggregate (`count`, `sum`, `min`, `max`, `mean`), the windows (`size`, `slide`;
    /// tumbling: `slide == size`) and the allowed lateness, all in milliseconds.
    #[new]
    #[pyo3(signature = (ts_path, key_path, value_path, kind, size, slide, lateness))]
    #[allow(clippy::too_many_arguments)]
    fn new(py: Python<'_>, ts_path: Vec<String>, key_path: Vec<String>, value_path: Option<Vec<String>>, kind: &str, size: i64, slide: i64, lateness: i64) -> PyResult<Self> {
        let kind = match kind {
            "count" => Kind::Count,
            "sum" => Kind::Sum,
            "min" => Kind::Min,
            "max" => Kind::Max,
            "mean" => Kind::Mean,
            other => return Err(PyValueError::new_err(format!("unknown aggregate {other}"))),
        };
        if size <= 0 || slide <= 0 || size % slide != 0 || lateness < 0 {
            return Err(PyValueError::new_err("size and slide must be positive, slide dividing size; lateness not negative"));
        }
        Ok(WindowFold {
            ts_path: path_of(py, ts_path),
            key_path: path_of(py, key_path),
            value_path: value_path.map(|p| path_of(py, p)),
            kind,
            size,
            slide,
            lateness,
            numbers: Vec::new(),
            counts: Vec::new(),
        })
    }

    /// Group a batch against watermark `wm`; event times must lie in `lo..=hi` (above
    /// `hi` they become `hi` with `clamp`).
    ///
    /// Returns `(max_ts, late, groups)`: the largest event time of the batch
    /// (`i64::MIN` for none), the late records as `(index, key, ts)` and
    /// the `(key, start, end)` of every window the batch changes, in the order the row
    /// path first meets them; or `None` when the batch must take the row path.
    fn group<'py>(&mut self, py: Python<'py>, values: &Bound<'py, PyList>, lo: i64, hi: i64, clamp: bool, wm: i64) -> Option<Grouped<'py>> {
        self.run(py, values, lo, hi, clamp, wm).ok()
    }

    /// The accumulators of the last `group`'s windows after folding in their records,
    /// from `accs` (one per window, as read from state or new); `None` when one
    /// cannot be folded exactly here.
    fn fold<'py>(&self, py: Python<'py>, accs: &Bound<'py, PyList>) -> Option<Bound<'py, PyList>> {
        if accs.len() != self.counts.len() {
            return None;
        }
        let out = PyList::empty(py);
        for (g, acc) in accs.iter().enumerate() {
            out.append(self.fold_one(py, g, &acc).ok()?).ok()?;
        }
        Some(out)
    }
}
