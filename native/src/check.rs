//! Vouching for a restore chunk's changelog entries without building Python objects.
//!
//! A restore checks every entry it writes, so that bytes this version cannot read fail
//! the restore rather than some later read (`RocksDBStore._check_changes`). Decoding
//! each key and value in Python to find out costs more than the rest of the restore.
//! `unvouched` walks the bytes instead and returns the entries it cannot vouch for: it
//! vouches only for what the Python decoders surely read (a key the native key decoder
//! reads whole; a value of the format byte and one msgpack body of plain data: nil,
//! bools, ints, floats, UTF-8 strs, bins, arrays, maps with plain keys, tuples, sets and
//! frozensets of plain items, and big ints). Everything else (registered objects, a
//! marker out of place, deep nesting, bad bytes) is left to the Python check, which
//! passes it or raises its usual error, so messages never change.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::keys::is_key;

const TUPLE: i8 = 1;
const SET: i8 = 2;
const FROZENSET: i8 = 3;
const BIGINT: i8 = 5;
const BIGINT_MAX_BYTES: usize = 1024;
const MAX_DEPTH: u32 = 64;

#[derive(Clone, Copy, PartialEq)]
enum Item {
    /// Hashable: nil, bool, int, float, str, bin.
    Plain,
    /// A list, dict, tuple, set or frozenset.
    Container,
    /// A marker ext (tuple, set, frozenset): valid only first in an array.
    Marker(i8),
}

struct Walk<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Walk<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let out = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn len(&mut self, width: usize) -> Option<usize> {
        let raw = self.take(width)?;
        Some(raw.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    }

    fn ext(&mut self, size: usize) -> Option<Item> {
        let code = self.take(1)?[0] as i8;
        self.take(size)?;
        match code {
            TUPLE | SET | FROZENSET => Some(Item::Marker(code)),
            BIGINT if (8..=BIGINT_MAX_BYTES).contains(&size) => Some(Item::Plain),
            _ => None, // registered objects, timestamps, unknown codes: Python decides
        }
    }

    /// One array's items: a marker may open it; sets hold plain items only.
    fn array(&mut self, n: usize, depth: u32) -> Option<Item> {
        let mut plain_only = false;
        for i in 0..n {
            match self.item(depth + 1)? {
                Item::Marker(code) if i == 0 => plain_only = code != TUPLE,
                Item::Marker(_) => return None,
                Item::Container if plain_only => return None,
                _ => {}
            }
        }
        Some(Item::Container)
    }

    fn map(&mut self, n: usize, depth: u32) -> Option<Item> {
        for _ in 0..n {
            if self.item(depth + 1)? != Item::Plain {
                return None;
            }
            if let Item::Marker(_) = self.item(depth + 1)? {
                return None;
            }
        }
        Some(Item::Container)
    }

    fn str(&mut self, n: usize) -> Option<Item> {
        std::str::from_utf8(self.take(n)?).ok()?;
        Some(Item::Plain)
    }

    fn item(&mut self, depth: u32) -> Option<Item> {
        if depth > MAX_DEPTH {
            return None;
        }
        let b = self.take(1)?[0];
        match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some(Item::Plain),
            0x80..=0x8f => self.map(usize::from(b & 0x0f), depth),
            0x90..=0x9f => self.array(usize::from(b & 0x0f), depth),
            0xa0..=0xbf => self.str(usize::from(b & 0x1f)),
            0xc4..=0xc6 => {
                let n = self.len(1 << (b - 0xc4))?;
                self.take(n)?;
                Some(Item::Plain)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (b - 0xc7))?;
                self.ext(n)
            }
            0xca => self.take(4).map(|_| Item::Plain),
            0xcb => self.take(8).map(|_| Item::Plain),
            0xcc..=0xcf => self.take(1 << (b - 0xcc)).map(|_| Item::Plain),
            0xd0..=0xd3 => self.take(1 << (b - 0xd0)).map(|_| Item::Plain),
            0xd4..=0xd8 => self.ext(1 << (b - 0xd4)),
            0xd9..=0xdb => {
                let n = self.len(1 << (b - 0xd9))?;
                self.str(n)
            }
            0xdc | 0xdd => {
                let n = self.len(if b == 0xdc { 2 } else { 4 })?;
                self.array(n, depth)
            }
            0xde | 0xdf => {
                let n = self.len(if b == 0xde { 2 } else { 4 })?;
                self.map(n, depth)
            }
            _ => None, // 0xc1: never used
        }
    }
}

/// Whether `data` is the format byte and one whole msgpack body of plain data.
fn is_value(data: &[u8], format: u8) -> bool {
    if data.first() != Some(&format) {
        return false;
    }
    let mut walk = Walk { data, pos: 1 };
    match walk.item(0) {
        Some(Item::Plain | Item::Container) => walk.pos == data.len(),
        _ => false,
    }
}

/// The keys of `chunk` (changelog key bytes -> value bytes or None), in its order,
/// whose entry this walk cannot vouch for: a key that is not bytes, is empty, starts
/// with `reserved` or is not a whole key; a value that is neither None nor plain data
/// after the `format` byte.
#[pyfunction]
pub fn unvouched<'py>(
    chunk: &Bound<'py, PyDict>,
    reserved: u8,
    format: u8,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(chunk.py());
    for (key, value) in chunk.iter() {
        let key_ok = match key.downcast_exact::<PyBytes>() {
            Ok(k) => {
                let raw = k.as_bytes();
                raw.first().is_some_and(|&b| b != reserved) && is_key(raw)
            }
            Err(_) => false,
        };
        let value_ok = key_ok
            && (value.is_none()
                || value.downcast_exact::<PyBytes>().is_ok_and(|v| is_value(v.as_bytes(), format)));
        if !value_ok {
            out.append(key)?;
        }
    }
    Ok(out)
}
