//! How JSON values cross the ABI in [`crate::abi::CallModule::call`]: as MessagePack
//! (<https://github.com/msgpack/msgpack/blob/master/spec.md>), a standard binary form of the same
//! data model, which both sides read without a text parse.
//!
//! Writing uses `rmp`'s primitives. Reading goes straight into a [`Value`], filled in place,
//! rather than through serde (`rmp-serde` reads echo's documents no faster than `serde_json`
//! reads their text; this reader takes about two thirds of that time: see
//! `host/runtime/benches/README.md`). The format is the standard one, so a plugin written
//! against the ABI in another language can use any MessagePack library.
//!
//! The mapping: `null`, booleans, strings, arrays and objects map to their MessagePack kinds;
//! an object's keys are strings. An integer is written in the smallest MessagePack integer that
//! holds it, a float as a float 64. On reading, a float 32 and wider integer forms are accepted
//! too; refused are binary and extension values, non-string keys, non-finite floats, more than
//! [`MAX_NESTING`] arrays and objects inside each other, lengths longer than the bytes left and
//! bytes after the value. A repeated key keeps its last value, as in `serde_json`.

use std::fmt;

use rmp::Marker;
use serde_json::{Map, Number, Value};

/// The most arrays and objects inside each other that [`read`] accepts: what `serde_json` accepts
/// in JSON text, so that a value that crosses as text also crosses as MessagePack and the reverse.
pub const MAX_NESTING: usize = 127;

/// A byte buffer in memory, which a write cannot fail: `Vec<u8>`, and abi_stable's `RVec<u8>`
/// (the buffer a host lends a plugin for its output).
pub trait Buffer: std::io::Write + sealed::Sealed {}

impl Buffer for Vec<u8> {}
impl Buffer for abi_stable::std_types::RVec<u8> {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for abi_stable::std_types::RVec<u8> {}
}

/// Appends `value` to `out` as MessagePack. Refused, with part of the value written: a string,
/// array or object longer than MessagePack's lengths hold (`u32`).
pub fn write<B: Buffer>(out: &mut B, value: &Value) -> Result<(), TooLong> {
    // Writing into a `Buffer` cannot fail, hence the ignored results of the writes themselves.
    match value {
        Value::Null => {
            let _ = rmp::encode::write_nil(out);
        }
        Value::Bool(b) => {
            let _ = rmp::encode::write_bool(out, *b);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let _ = rmp::encode::write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                let _ = rmp::encode::write_sint(out, i);
            } else {
                // Neither integer: a finite float (serde_json holds no other numbers).
                let _ = rmp::encode::write_f64(out, n.as_f64().unwrap_or_default());
            }
        }
        Value::String(s) => write_str(out, s)?,
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(out, len_u32(items.len())?);
            for item in items {
                write(out, item)?;
            }
        }
        Value::Object(map) => {
            let _ = rmp::encode::write_map_len(out, len_u32(map.len())?);
            for (key, item) in map {
                write_str(out, key)?;
                write(out, item)?;
            }
        }
    }
    Ok(())
}

fn write_str<B: Buffer>(out: &mut B, s: &str) -> Result<(), TooLong> {
    let _ = rmp::encode::write_str_len(out, len_u32(s.len())?);
    let _ = out.write_all(s.as_bytes());
    Ok(())
}

fn len_u32(len: usize) -> Result<u32, TooLong> {
    u32::try_from(len).map_err(|_| TooLong)
}

/// A value [`write`] cannot encode: a string, array or object of 4 Gi bytes or elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, array or object too long for MessagePack (4 Gi or more)")
    }
}

impl std::error::Error for TooLong {}

/// Why bytes are not a value, and where: `offset` is the byte at which reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The byte offset of the problem.
    pub offset: usize,
    /// What is wrong there.
    pub problem: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

impl std::error::Error for WireError {}

/// Reads the one MessagePack value `bytes` holds.
pub fn read(bytes: &[u8]) -> Result<Value, WireError> {
    let mut value = Value::Null;
    read_into(bytes, &mut value)?;
    Ok(value)
}

/// Reads the one MessagePack value `bytes` holds into `slot`, which is left `Null` on an error.
///
/// [`read`] without moving the value out: a `Value` moved through a few `Result`s costs a
/// small call a measurable part of its time (each copy of a freshly written enum stalls on
/// the bytes its tag was written with).
pub fn read_into(bytes: &[u8], slot: &mut Value) -> Result<(), WireError> {
    let mut reader = Reader { bytes, rest: bytes };
    *slot = Value::Null;
    let read = reader
        .fill(slot, 0)
        .and_then(|()| match reader.rest.is_empty() {
            true => Ok(()),
            false => Err(reader.error("bytes after the value")),
        });
    if read.is_err() {
        *slot = Value::Null;
    }
    read
}

struct Reader<'a> {
    bytes: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn error(&self, problem: &'static str) -> WireError {
        WireError {
            offset: self.bytes.len() - self.rest.len(),
            problem,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        match self.rest.split_first_chunk::<N>() {
            Some((chunk, rest)) => {
                self.rest = rest;
                Ok(*chunk)
            }
            None => Err(self.error("the bytes end inside a value")),
        }
    }

    /// The length after a string, array or map marker (`fixed` for a fix marker, else `width`
    /// big-endian bytes), with the marker and the length consumed.
    fn length(&mut self, fixed: Option<u8>, width: usize) -> Result<usize, WireError> {
        let at = self.rest;
        self.rest = &self.rest[1..];
        let len = match (fixed, width) {
            (Some(n), _) => Ok(usize::from(n)),
            (None, 1) => self.take::<1>().map(|b| usize::from(b[0])),
            (None, 2) => self.take::<2>().map(|b| usize::from(u16::from_be_bytes(b))),
            (None, _) => self.take::<4>().map(|b| u32::from_be_bytes(b) as usize),
        };
        if len.is_err() {
            self.rest = at;
            return Err(self.error("the bytes end inside a value"));
        }
        len
    }

    /// The string whose marker is next (`what` is refused as not a string).
    fn str(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let at = self.rest;
        let len = match self.rest.first().map(|&b| Marker::from_u8(b)) {
            Some(Marker::FixStr(n)) => self.length(Some(n), 0),
            Some(Marker::Str8) => self.length(None, 1),
            Some(Marker::Str16) => self.length(None, 2),
            Some(Marker::Str32) => self.length(None, 4),
            Some(_) => return Err(self.error(what)),
            None => return Err(self.error("the bytes end before a value")),
        };
        let Some((bytes, rest)) = len.ok().and_then(|len| self.rest.split_at_checked(len)) else {
            self.rest = at;
            return Err(self.error("the bytes end inside a string"));
        };
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                self.rest = rest;
                Ok(s)
            }
            Err(_) => {
                self.rest = at;
                Err(self.error("a string that is not UTF-8"))
            }
        }
    }

    /// The length of the array or map whose marker is next, checked against the bytes left
    /// (each element takes at least `per` bytes), so that a forged length allocates nothing.
    fn len(&mut self, fixed: Option<u8>, width: usize, per: usize) -> Result<usize, WireError> {
        let at = self.rest;
        let len = self.length(fixed, width)?;
        if len.saturating_mul(per) > self.rest.len() {
            self.rest = at;
            return Err(self.error("a length longer than the bytes left"));
        }
        Ok(len)
    }

    /// Reads the next value into `slot` (a `Null`). In place rather than returned: values
    /// returned up the recursion were copied at every level, which cost more than the reading.
    fn fill(&mut self, slot: &mut Value, depth: usize) -> Result<(), WireError> {
        let Some(&first) = self.rest.first() else {
            return Err(self.error("the bytes end before a value"));
        };
        let marker = Marker::from_u8(first);
        let (is_map, fixed, width) = match marker {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                *slot = Value::String(self.str("")?.to_owned());
                return Ok(());
            }
            Marker::FixArray(n) => (false, Some(n), 0),
            Marker::Array16 => (false, None, 2),
            Marker::Array32 => (false, None, 4),
            Marker::FixMap(n) => (true, Some(n), 0),
            Marker::Map16 => (true, None, 2),
            Marker::Map32 => (true, None, 4),
            _ => return self.scalar(slot, marker),
        };
        if depth >= MAX_NESTING {
            return Err(self.error("more than 127 arrays and objects inside each other"));
        }
        match is_map {
            false => {
                let len = self.len(fixed, width, 1)?;
                *slot = Value::Array(Vec::with_capacity(len));
                let Value::Array(items) = slot else {
                    unreachable!("just set")
                };
                for _ in 0..len {
                    items.push(Value::Null);
                    if let Some(item) = items.last_mut() {
                        self.fill(item, depth + 1)?;
                    }
                }
            }
            true => {
                let len = self.len(fixed, width, 2)?;
                *slot = Value::Object(Map::new());
                let Value::Object(map) = slot else {
                    unreachable!("just set")
                };
                for _ in 0..len {
                    let key = self.str("an object key that is not a string")?.to_owned();
                    // A repeated key's earlier value is replaced, as serde_json does.
                    let item = map.entry(key).or_insert(Value::Null);
                    *item = Value::Null;
                    self.fill(item, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// Reads the scalar whose marker is next into `slot`.
    fn scalar(&mut self, slot: &mut Value, marker: Marker) -> Result<(), WireError> {
        let start = self.rest;
        self.rest = &self.rest[1..];
        let value = match marker {
            Marker::Null => Value::Null,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::from(n),
            Marker::FixNeg(n) => Value::from(n),
            Marker::U8 => Value::from(u8::from_be_bytes(self.take()?)),
            Marker::U16 => Value::from(u16::from_be_bytes(self.take()?)),
            Marker::U32 => Value::from(u32::from_be_bytes(self.take()?)),
            Marker::U64 => Value::from(u64::from_be_bytes(self.take()?)),
            Marker::I8 => Value::from(i8::from_be_bytes(self.take()?)),
            Marker::I16 => Value::from(i16::from_be_bytes(self.take()?)),
            Marker::I32 => Value::from(i32::from_be_bytes(self.take()?)),
            Marker::I64 => Value::from(i64::from_be_bytes(self.take()?)),
            Marker::F32 => {
                let f = f64::from(f32::from_be_bytes(self.take()?));
                self.float(f, start)?
            }
            Marker::F64 => {
                let f = f64::from_be_bytes(self.take()?);
                self.float(f, start)?
            }
            _ => {
                self.rest = start;
                return Err(self.error("a MessagePack kind JSON does not have"));
            }
        };
        *slot = value;
        Ok(())
    }

    fn float(&mut self, f: f64, start: &'a [u8]) -> Result<Value, WireError> {
        match Number::from_f64(f) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                self.rest = start;
                Err(self.error("a float that is not finite"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn packed(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, value).unwrap();
        out
    }

    #[test]
    fn values_cross_unchanged() {
        let deep = (0..MAX_NESTING).fold(json!(1), |v, _| json!([v]));
        for value in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(127),
            json!(128),
            json!(-1),
            json!(-33),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(65_536),
            json!(-2_147_483_649_i64),
            json!(0.5),
            json!(-1.0e300),
            json!(""),
            json!("é ✓ \u{0}"),
            json!("x".repeat(70_000)),
            json!([]),
            json!({}),
            json!({"iccid": "8901", "n": [1, -2, 3.25, null, {"a": {"b": []}}], "t": true}),
            Value::Array((0..70_000).map(Value::from).collect()),
            deep,
        ] {
            let bytes = packed(&value);
            assert_eq!(read(&bytes), Ok(value.clone()), "{value}");
            // What any MessagePack reader makes of it is the same value.
            let via_serde: Value = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(via_serde, value);
        }
    }

    #[test]
    fn the_nesting_limit_is_serde_jsons() {
        let text = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<Value>(&text(MAX_NESTING)).is_ok());
        assert!(serde_json::from_str::<Value>(&text(MAX_NESTING + 1)).is_err());
    }

    #[test]
    fn integers_take_the_smallest_form() {
        assert_eq!(packed(&json!(5)), [0x05]);
        assert_eq!(packed(&json!(-5)), [0xfb]);
        assert_eq!(packed(&json!(200)), [0xcc, 200]);
        assert_eq!(packed(&json!({"a": null})), [0x81, 0xa1, b'a', 0xc0]);
    }

    #[test]
    fn other_writers_forms_are_read() {
        // Wider integer forms than needed, and a float 32, as another library may write them.
        assert_eq!(read(&[0xcd, 0x00, 0x05]), Ok(json!(5)));
        assert_eq!(read(&[0xd3, 0, 0, 0, 0, 0, 0, 0, 0x07]), Ok(json!(7)));
        assert_eq!(read(&[0xca, 0x3f, 0x00, 0x00, 0x00]), Ok(json!(0.5)));
        assert_eq!(read(&[0xd9, 0x01, b'x']), Ok(json!("x")));
        assert_eq!(
            read(&[0xde, 0x00, 0x01, 0xa1, b'k', 0x01]),
            Ok(json!({"k": 1}))
        );
        // A repeated key keeps its last value.
        assert_eq!(
            read(&[0x82, 0xa1, b'k', 0x01, 0xa1, b'k', 0x02]),
            Ok(json!({"k": 2}))
        );
    }

    #[test]
    fn bad_bytes_are_refused_with_their_place() {
        let too_deep = packed(&(0..=MAX_NESTING).fold(json!(1), |v, _| json!([v])));
        for (bytes, problem, offset) in [
            (&[][..], "the bytes end before a value", 0),
            (&[0xc0, 0xc0][..], "bytes after the value", 1),
            (&[0x92, 0x01][..], "a length longer than the bytes left", 0),
            (&[0x91][..], "a length longer than the bytes left", 0),
            (
                &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
                "a length longer than the bytes left",
                0,
            ),
            (&[0xdd, 0xff][..], "the bytes end inside a value", 0),
            (&[0xcd, 0x01][..], "the bytes end inside a value", 1),
            (&[0xa3, b'a'][..], "the bytes end inside a string", 0),
            (&[0xa1, 0xff][..], "a string that is not UTF-8", 0),
            (
                &[0x81, 0x01, 0x01][..],
                "an object key that is not a string",
                1,
            ),
            (
                &[0xc4, 0x00][..],
                "a MessagePack kind JSON does not have",
                0,
            ),
            (
                &[0xd4, 0x01, 0x00][..],
                "a MessagePack kind JSON does not have",
                0,
            ),
            (&[0xc1][..], "a MessagePack kind JSON does not have", 0),
            (
                &[0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0][..],
                "a float that is not finite",
                0,
            ),
            (
                &[0x91, 0xca, 0x7f, 0xc0, 0, 0][..],
                "a float that is not finite",
                1,
            ),
            (
                &too_deep[..],
                "more than 127 arrays and objects inside each other",
                MAX_NESTING,
            ),
        ] {
            assert_eq!(
                read(bytes),
                Err(WireError { offset, problem }),
                "{bytes:02x?}"
            );
        }
        assert_eq!(
            WireError {
                offset: 3,
                problem: "bytes after the value"
            }
            .to_string(),
            "bytes after the value at byte 3"
        );
    }

    #[test]
    fn no_byte_string_makes_the_reader_panic() {
        // Every prefix and every one-byte change of a rich document: refused or read, never a
        // panic, and what is read writes back to bytes that read the same.
        let bytes =
            packed(&json!({"a": [1, -300, 2.5, "xyz", {"b": null, "c": [true]}], "d": 70_000}));
        let mut cases: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for i in 0..bytes.len() {
            for b in [
                0x00, 0x7f, 0x80, 0x90, 0xa0, 0xc0, 0xc1, 0xca, 0xcb, 0xd9, 0xdc, 0xde, 0xdf, 0xff,
            ] {
                let mut changed = bytes.clone();
                changed[i] = b;
                cases.push(changed);
            }
        }
        for case in cases {
            if let Ok(value) = read(&case) {
                assert_eq!(read(&packed(&value)), Ok(value));
            }
        }
    }
}
