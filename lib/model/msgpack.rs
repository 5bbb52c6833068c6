//! The one MessagePack reader: a cursor over a payload that reads values in place.
//!
//! Every stage that looks into records without decoding them (the event view, the filter, sort,
//! track, the journey merge, pcap export, the header edits of every stage) reads through this
//! module, so there is one set of rules for what a well-formed value is and one error type.
//!
//! Contract:
//! - **Zero-copy.** Strings, byte strings and whole encoded values are borrowed from the payload;
//!   reading a field allocates nothing. Only [`splice`] writes, into a buffer the caller reuses.
//! - **Bounded.** Every length is checked against what is left before it is used, so a corrupt
//!   or hostile record yields an [`Error`], never a panic, a huge allocation or a long loop;
//!   [`Cursor::skip`] steps over nested containers iteratively (no recursion, no depth limit
//!   needed) and rejects a container that claims more items than bytes are left.
//! - **Located errors.** An [`Error`] carries the byte offset, within the slice the cursor was
//!   made over, of the value at fault (for a cut-off value: where that value starts; for a
//!   payload that ends where a value should start: the payload's length). Callers add the
//!   frame's position to report `input: byte N: ...`. Its text is the wording the stages have
//!   always used, so messages stay as they were.
//! - **Typed reads are strict.** [`Cursor::uint`], [`Cursor::str`], ... accept exactly the
//!   encodings of their type (integers of any width and sign that fit, as serde does) and
//!   return [`Problem::Expected`] otherwise, leaving interpretation (absent, default, fallback to
//!   serde) to the caller.

use std::fmt;
use std::ops::Range;

/// Why a value could not be read, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// Byte offset within the slice the cursor reads (see the module header).
    pub offset: usize,
    pub problem: Problem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The payload ends where a value should start.
    Ends,
    /// The bytes after a marker (a length, or a container's count) are cut off.
    HeaderPastEnd,
    /// A value's body (number, string, byte string, extension) is cut off.
    PastEnd,
    /// A container claims more items than bytes are left (each item takes at least one).
    TooManyItems,
    /// The marker byte 0xc1, which MessagePack never uses.
    Reserved,
    /// A value of another type than the one asked for.
    Expected(Kind),
    /// An integer that does not fit the type asked for.
    OutOfRange,
    /// A string that is not UTF-8.
    NotUtf8,
    /// A map key that is an array or a map.
    KeyIsContainer,
}

/// The types a typed read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nil,
    Bool,
    Int,
    Str,
    Bin,
    Array,
    Map,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Ends => "the record ends inside a value",
            Problem::HeaderPastEnd | Problem::PastEnd => "a value runs past the end of the record",
            Problem::TooManyItems => "a container claims more items than the record holds",
            Problem::Reserved => "invalid MessagePack byte 0xc1",
            Problem::Expected(Kind::Nil) => "expected nil",
            Problem::Expected(Kind::Bool) => "expected a boolean",
            Problem::Expected(Kind::Int) => "expected an integer",
            Problem::Expected(Kind::Str) => "expected a string",
            Problem::Expected(Kind::Bin) => "expected a byte string",
            Problem::Expected(Kind::Array) => "expected an array",
            Problem::Expected(Kind::Map) => "record is not a map",
            Problem::OutOfRange => "an integer is out of range",
            Problem::NotUtf8 => "a string is not UTF-8",
            Problem::KeyIsContainer => "map key is a container",
        })
    }
}

impl fmt::Display for Error {
    /// The problem alone: callers put the location in front, as their messages always did.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.problem.fmt(f)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The wording of the `rmp` crate's header readers (`read_map_len`, `read_str_len`), which
    /// some messages quote after their own words (`record is not a map: ...`).
    pub fn rmp_text(&self) -> &'static str {
        match self.problem {
            Problem::Ends => "failed to read MessagePack marker",
            Problem::HeaderPastEnd | Problem::PastEnd => "failed to read MessagePack data",
            _ => "the type decoded isn't match with the expected one",
        }
    }

    /// The same error, located `base` bytes further on (for a cursor over a part of a payload).
    pub fn shifted(self, base: usize) -> Error {
        Error {
            offset: self.offset + base,
            ..self
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One value as [`Cursor::read`] sees it. Containers are their item count, with the cursor on
/// the first item, so callers walk into them without copying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    /// Every integer width, signed or not, fits in an i128: comparisons need no casts.
    Int(i128),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    /// Extension types: nothing in trail uses them, beyond stepping over them.
    Ext,
}

/// A read position in a payload. Each read consumes one whole value (or a container's header);
/// after an error the position is unspecified.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

/// Marks markers whose value size is not given by the marker alone (containers, sized strings).
const VARIABLE: u8 = 0xff;

/// For each marker byte: how many bytes follow it, or [`VARIABLE`].
const FIXED_SIZE: [u8; 256] = {
    let mut table = [VARIABLE; 256];
    let mut marker = 0;
    while marker < 256 {
        let byte = marker as u8;
        table[marker] = match byte {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 0,
            0xa0..=0xbf => byte & 0x1f,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 | 0xd4 => 2,
            0xd5 => 3,
            0xca | 0xce | 0xd2 => 4,
            0xd6 => 5,
            0xcb | 0xcf | 0xd3 => 8,
            0xd7 => 9,
            0xd8 => 17,
            _ => VARIABLE,
        };
        marker += 1;
    }
    table
};

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, at: 0 }
    }

    /// A cursor at `at` within `buf` (errors are located within `buf`).
    pub fn at_offset(buf: &'a [u8], at: usize) -> Cursor<'a> {
        Cursor {
            buf,
            at: at.min(buf.len()),
        }
    }

    /// The current position.
    #[inline]
    pub fn offset(&self) -> usize {
        self.at
    }

    /// The whole slice the cursor reads.
    #[inline]
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// What is left after the position.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.at..]
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }

    /// The next marker byte, not consumed.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.at).copied()
    }

    #[inline]
    fn error(&self, offset: usize, problem: Problem) -> Error {
        Error { offset, problem }
    }

    /// Consumes the marker byte; `Ends` when there is none.
    #[inline]
    fn marker(&mut self) -> Result<u8> {
        match self.buf.get(self.at) {
            Some(&byte) => {
                self.at += 1;
                Ok(byte)
            }
            None => Err(self.error(self.at, Problem::Ends)),
        }
    }

    /// A big-endian number of `n` bytes following the marker of the value at `start`.
    #[inline]
    fn be(&mut self, n: usize, start: usize) -> Result<u64> {
        let bytes = self
            .buf
            .get(self.at..self.at + n)
            .ok_or(self.error(start, Problem::HeaderPastEnd))?;
        self.at += n;
        Ok(bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
    }

    /// The `len` bytes of the body of the value at `start`.
    #[inline]
    fn take(&mut self, len: u64, start: usize) -> Result<&'a [u8]> {
        let left = (self.buf.len() - self.at) as u64;
        if len > left {
            return Err(self.error(start, Problem::PastEnd));
        }
        let bytes = &self.buf[self.at..self.at + len as usize];
        self.at += len as usize;
        Ok(bytes)
    }

    /// A fixed-size body: a number that is cut off is a cut-off value.
    #[inline]
    fn number(&mut self, n: usize, start: usize) -> Result<u64> {
        self.be(n, start)
            .map_err(|_| self.error(start, Problem::PastEnd))
    }

    /// Reads one value's header; for scalars, the whole value.
    #[inline]
    pub fn read(&mut self) -> Result<Value<'a>> {
        let start = self.at;
        let marker = self.marker()?;
        Ok(match marker {
            0x00..=0x7f => Value::Int(marker.into()),
            0xe0..=0xff => Value::Int((marker as i8).into()),
            0x80..=0x8f => Value::Map(u32::from(marker & 0x0f)),
            0x90..=0x9f => Value::Array(u32::from(marker & 0x0f)),
            0xa0..=0xbf => Value::Str(self.take(u64::from(marker & 0x1f), start)?),
            0xc0 => Value::Nil,
            0xc1 => return Err(self.error(start, Problem::Reserved)),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 | 0xd9 => {
                let len = self.be(1, start)?;
                let body = self.take(len, start)?;
                if marker == 0xc4 {
                    Value::Bin(body)
                } else {
                    Value::Str(body)
                }
            }
            0xc5 | 0xda => {
                let len = self.be(2, start)?;
                let body = self.take(len, start)?;
                if marker == 0xc5 {
                    Value::Bin(body)
                } else {
                    Value::Str(body)
                }
            }
            0xc6 | 0xdb => {
                let len = self.be(4, start)?;
                let body = self.take(len, start)?;
                if marker == 0xc6 {
                    Value::Bin(body)
                } else {
                    Value::Str(body)
                }
            }
            0xc7 => {
                let len = self.be(1, start)?;
                self.take(len + 1, start)?;
                Value::Ext
            }
            0xc8 => {
                let len = self.be(2, start)?;
                self.take(len + 1, start)?;
                Value::Ext
            }
            0xc9 => {
                let len = self.be(4, start)?;
                self.take(len + 1, start)?;
                Value::Ext
            }
            0xca => Value::Float(f32::from_bits(self.number(4, start)? as u32).into()),
            0xcb => Value::Float(f64::from_bits(self.number(8, start)?)),
            0xcc => Value::Int(self.number(1, start)?.into()),
            0xcd => Value::Int(self.number(2, start)?.into()),
            0xce => Value::Int(self.number(4, start)?.into()),
            0xcf => Value::Int(self.number(8, start)?.into()),
            0xd0 => Value::Int((self.number(1, start)? as u8 as i8).into()),
            0xd1 => Value::Int((self.number(2, start)? as u16 as i16).into()),
            0xd2 => Value::Int((self.number(4, start)? as u32 as i32).into()),
            0xd3 => Value::Int((self.number(8, start)? as i64).into()),
            0xd4..=0xd8 => {
                // fixext 1, 2, 4, 8, 16: a type byte and the data.
                self.take(1 + (1u64 << (marker - 0xd4)), start)?;
                Value::Ext
            }
            0xdc => Value::Array(self.be(2, start)? as u32),
            0xdd => Value::Array(self.be(4, start)? as u32),
            0xde => Value::Map(self.be(2, start)? as u32),
            0xdf => Value::Map(self.be(4, start)? as u32),
        })
    }

    /// Steps over one whole value.
    ///
    /// This is where stages that index records spend their time (trail-filter steps over every
    /// section before the ones an expression reads; a record index over every section), so it
    /// works on marker bytes directly and iterates with a count of values still to skip instead
    /// of recursing: no nesting depth can exhaust the stack.
    pub fn skip(&mut self) -> Result<()> {
        let buf = self.buf;
        let mut at = self.at;
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let start = at;
            let Some(&marker) = buf.get(at) else {
                return Err(self.error(at, Problem::Ends));
            };
            at += 1;
            // Most values are scalars of a size the marker alone gives: one table look-up and
            // one well-predicted branch, instead of a many-way jump on every value.
            let fixed = FIXED_SIZE[usize::from(marker)];
            if fixed != VARIABLE {
                at += usize::from(fixed);
                if at > buf.len() {
                    return Err(self.error(start, Problem::PastEnd));
                }
                continue;
            }
            let head = |n: usize| -> Result<u64> {
                let bytes = buf.get(start + 1..start + 1 + n).ok_or(Error {
                    offset: start,
                    problem: Problem::HeaderPastEnd,
                })?;
                Ok(bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
            };
            let (width, len, items): (usize, u64, u64) = match marker {
                0x80..=0x8f => (0, 0, 2 * u64::from(marker & 0x0f)),
                0x90..=0x9f => (0, 0, u64::from(marker & 0x0f)),
                0xc4 | 0xd9 => (1, head(1)?, 0),
                0xc5 | 0xda => (2, head(2)?, 0),
                0xc6 | 0xdb => (4, head(4)?, 0),
                0xc7 => (1, head(1)? + 1, 0),
                0xc8 => (2, head(2)? + 1, 0),
                0xc9 => (4, head(4)? + 1, 0),
                0xdc => (2, 0, head(2)?),
                0xdd => (4, 0, head(4)?),
                0xde => (2, 0, 2 * head(2)?),
                0xdf => (4, 0, 2 * head(4)?),
                // 0xc1, the only marker left without a fixed size.
                _ => return Err(self.error(start, Problem::Reserved)),
            };
            at += width;
            if len > (buf.len() - at) as u64 {
                return Err(self.error(start, Problem::PastEnd));
            }
            at += len as usize;
            pending += items;
            // Each value takes at least a byte: a larger count is corrupt (and would loop long).
            // Which container of the value claims too much is not known here: the value as a
            // whole does.
            if pending > (buf.len() - at) as u64 {
                return Err(self.error(self.at, Problem::TooManyItems));
            }
        }
        self.at = at;
        Ok(())
    }

    /// Steps over one whole value and returns its encoded bytes.
    #[inline]
    pub fn value(&mut self) -> Result<&'a [u8]> {
        let start = self.at;
        self.skip()?;
        Ok(&self.buf[start..self.at])
    }

    /// Where the next whole value lies, stepping over it.
    #[inline]
    pub fn value_range(&mut self) -> Result<Range<usize>> {
        let start = self.at;
        self.skip()?;
        Ok(start..self.at)
    }

    /// A map header: the number of entries.
    #[inline]
    pub fn map_len(&mut self) -> Result<u32> {
        let start = self.at;
        match self.marker()? {
            marker @ 0x80..=0x8f => Ok(u32::from(marker & 0x0f)),
            0xde => Ok(self.be(2, start)? as u32),
            0xdf => Ok(self.be(4, start)? as u32),
            _ => Err(self.error(start, Problem::Expected(Kind::Map))),
        }
    }

    /// An array header: the number of items.
    #[inline]
    pub fn array_len(&mut self) -> Result<u32> {
        let start = self.at;
        match self.marker()? {
            marker @ 0x90..=0x9f => Ok(u32::from(marker & 0x0f)),
            0xdc => Ok(self.be(2, start)? as u32),
            0xdd => Ok(self.be(4, start)? as u32),
            _ => Err(self.error(start, Problem::Expected(Kind::Array))),
        }
    }

    /// A string's bytes, not checked as UTF-8 (keys compared with known ASCII names).
    #[inline]
    pub fn str_bytes(&mut self) -> Result<&'a [u8]> {
        let start = self.at;
        let len = match self.marker()? {
            marker @ 0xa0..=0xbf => u64::from(marker & 0x1f),
            0xd9 => self.be(1, start)?,
            0xda => self.be(2, start)?,
            0xdb => self.be(4, start)?,
            _ => return Err(self.error(start, Problem::Expected(Kind::Str))),
        };
        self.take(len, start)
    }

    /// A string.
    #[inline]
    pub fn str(&mut self) -> Result<&'a str> {
        let start = self.at;
        let bytes = self.str_bytes()?;
        std::str::from_utf8(bytes).map_err(|_| self.error(start, Problem::NotUtf8))
    }

    /// A byte string (`bin`).
    #[inline]
    pub fn bin(&mut self) -> Result<&'a [u8]> {
        let start = self.at;
        let len = match self.marker()? {
            0xc4 => self.be(1, start)?,
            0xc5 => self.be(2, start)?,
            0xc6 => self.be(4, start)?,
            _ => return Err(self.error(start, Problem::Expected(Kind::Bin))),
        };
        self.take(len, start)
    }

    #[inline]
    pub fn bool(&mut self) -> Result<bool> {
        let start = self.at;
        match self.marker()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(self.error(start, Problem::Expected(Kind::Bool))),
        }
    }

    /// Consumes a nil and returns true; anything else is left in place (false).
    #[inline]
    pub fn nil(&mut self) -> bool {
        if self.peek() == Some(0xc0) {
            self.at += 1;
            return true;
        }
        false
    }

    /// nil as `None`, anything else read by `value`.
    #[inline]
    pub fn option<T>(&mut self, value: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if self.nil() {
            return Ok(None);
        }
        value(self).map(Some)
    }

    /// An integer that is not negative, of any width or sign marker (as serde reads a u64).
    #[inline]
    pub fn uint(&mut self) -> Result<u64> {
        let start = self.at;
        let marker = self.marker()?;
        match marker {
            0x00..=0x7f => Ok(u64::from(marker)),
            0xcc => self.number(1, start),
            0xcd => self.number(2, start),
            0xce => self.number(4, start),
            0xcf => self.number(8, start),
            0xd0..=0xd3 | 0xe0..=0xff => {
                self.at = start;
                let value = self.int()?;
                u64::try_from(value).map_err(|_| self.error(start, Problem::OutOfRange))
            }
            _ => Err(self.error(start, Problem::Expected(Kind::Int))),
        }
    }

    /// A signed integer, of any width or sign marker that fits an i64.
    #[inline]
    pub fn int(&mut self) -> Result<i64> {
        let start = self.at;
        let marker = self.marker()?;
        match marker {
            0x00..=0x7f | 0xe0..=0xff => Ok(i64::from(marker as i8)),
            0xcc => Ok(self.number(1, start)? as i64),
            0xcd => Ok(self.number(2, start)? as i64),
            0xce => Ok(self.number(4, start)? as i64),
            0xcf => i64::try_from(self.number(8, start)?)
                .map_err(|_| self.error(start, Problem::OutOfRange)),
            0xd0 => Ok(i64::from(self.number(1, start)? as u8 as i8)),
            0xd1 => Ok(i64::from(self.number(2, start)? as u16 as i16)),
            0xd2 => Ok(i64::from(self.number(4, start)? as u32 as i32)),
            0xd3 => Ok(self.number(8, start)? as i64),
            _ => Err(self.error(start, Problem::Expected(Kind::Int))),
        }
    }

    /// An unsigned integer that fits `T` (serde rejects one that does not).
    #[inline]
    pub fn num<T: TryFrom<u64>>(&mut self) -> Result<T> {
        let start = self.at;
        T::try_from(self.uint()?).map_err(|_| self.error(start, Problem::OutOfRange))
    }

    /// A map key. trail writes keys as strings; a key of another scalar type is read and
    /// returned as `None` (lookups step over it), a container key is an error.
    #[inline]
    pub fn key(&mut self) -> Result<Option<&'a [u8]>> {
        // Fast path: trail's keys are short strings (fixstr), one byte of header.
        if let Some(&marker) = self.buf.get(self.at) {
            if marker & 0xe0 == 0xa0 {
                let start = self.at;
                self.at += 1;
                return self.take(u64::from(marker & 0x1f), start).map(Some);
            }
        }
        let start = self.at;
        match self.read()? {
            Value::Str(s) => Ok(Some(s)),
            Value::Array(_) | Value::Map(_) => Err(self.error(start, Problem::KeyIsContainer)),
            _ => Ok(None),
        }
    }

    /// Within a map whose header was just read (`count` entries at the cursor), the encoded
    /// value stored under `wanted`. Leaves the cursor after that value, or after the map.
    pub fn find(&mut self, count: u32, wanted: &[u8]) -> Result<Option<&'a [u8]>> {
        for _ in 0..count {
            let found = self.key()? == Some(wanted);
            let value = self.value()?;
            if found {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The entries of a map whose header was just read (`count` entries at the cursor).
    pub fn entries(self, count: u32) -> Entries<'a> {
        Entries {
            cursor: self,
            left: count,
        }
    }
}

/// The encoded value stored under `key` in the map `map` (absent: `None`). Walks the map up to
/// that key: for reading one field without indexing the whole map.
pub fn map_get<'a>(map: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>> {
    let mut cursor = Cursor::new(map);
    let count = cursor.map_len()?;
    cursor.find(count, key)
}

/// The encoded value at `path` (keys of nested maps) from the value `value`: `None` when a key
/// is absent or a value on the way is not a map.
pub fn path_get<'a>(value: &'a [u8], path: &[&[u8]]) -> Result<Option<&'a [u8]>> {
    let mut here = value;
    for key in path {
        let mut cursor = Cursor::new(here);
        let count = match cursor.read()? {
            Value::Map(count) => count,
            _ => return Ok(None),
        };
        match cursor.find(count, key)? {
            Some(inner) => here = inner,
            None => return Ok(None),
        }
    }
    Ok(Some(here))
}

/// One entry of a map, as byte offsets into the slice it was read from: its encoded key starts
/// at `start`, the key's text at `key`, its value at `value`, and the entry ends at `end`. u32
/// offsets: a payload is at most 16 MiB ([`crate::model::codec::MAX_FRAME`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub start: u32,
    pub key: u32,
    pub value: u32,
    pub end: u32,
}

impl Entry {
    /// The key's text (for a key that is not a string: its encoded bytes, which match no name).
    #[inline]
    pub fn key<'p>(&self, buf: &'p [u8]) -> &'p [u8] {
        &buf[self.key as usize..self.value as usize]
    }

    /// The encoded value.
    #[inline]
    pub fn value<'p>(&self, buf: &'p [u8]) -> &'p [u8] {
        &buf[self.value as usize..self.end as usize]
    }

    pub fn value_range(&self) -> Range<usize> {
        self.value as usize..self.end as usize
    }
}

/// Iterator over the entries of a map (see [`Cursor::entries`]); stops after the first error.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    cursor: Cursor<'a>,
    left: u32,
}

impl Entries<'_> {
    /// Where the cursor is: after the map once every entry was read.
    pub fn offset(&self) -> usize {
        self.cursor.at
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;

    #[inline]
    fn next(&mut self) -> Option<Result<Entry>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let c = &mut self.cursor;
        let start = c.at;
        let entry = (|| {
            let key = match c.key()? {
                // The key's text ends where its value starts.
                Some(text) => c.at - text.len(),
                None => start,
            };
            let value = c.at;
            c.skip()?;
            let offset = |at: usize| {
                u32::try_from(at).map_err(|_| Error {
                    offset: start,
                    problem: Problem::TooManyItems,
                })
            };
            Ok(Entry {
                start: offset(start)?,
                key: offset(key)?,
                value: offset(value)?,
                end: offset(c.at)?,
            })
        })();
        if entry.is_err() {
            self.left = 0;
        }
        Some(entry)
    }
}

/// Re-encodes the map `map` into `out` (cleared first) with the values of some entries
/// replaced or added; every other byte is copied as it is, keys and map header included.
///
/// For each entry, `replace(key, value, out)` may write a new encoded value into `out` and
/// return true; otherwise the value is copied. Entries of `add` whose key the map lacks are
/// appended in order (the map header then grows by that many). `add` holds at most 64 entries.
pub fn splice<'a, E: From<Error>>(
    map: &'a [u8],
    out: &mut Vec<u8>,
    replace: impl FnMut(&'a [u8], &'a [u8], &mut Vec<u8>) -> Result<bool, E>,
    add: &[(&[u8], &[u8])],
) -> Result<(), E> {
    let mut cursor = Cursor::new(map);
    let count = cursor.map_len()?;
    let header_end = cursor.at;
    let entries = cursor.entries(count);
    let mut end = header_end;
    // Checks the whole map before writing, so that the entries can be read again infallibly.
    for entry in entries.clone() {
        end = entry?.end as usize;
    }
    splice_entries(
        map,
        header_end,
        count,
        entries.map(|e| e.unwrap_or_default()),
        end,
        out,
        replace,
        add,
    )
}

/// [`splice`] over entries already read: `map[..header_end]` is the map header of `count`
/// entries, `entries` are those entries in order, ending at `end`.
#[allow(clippy::too_many_arguments)]
pub fn splice_entries<'a, E>(
    map: &'a [u8],
    header_end: usize,
    count: u32,
    entries: impl Iterator<Item = Entry> + Clone,
    end: usize,
    out: &mut Vec<u8>,
    mut replace: impl FnMut(&'a [u8], &'a [u8], &mut Vec<u8>) -> Result<bool, E>,
    add: &[(&[u8], &[u8])],
) -> Result<(), E> {
    assert!(add.len() <= 64, "splice adds at most 64 entries");
    out.clear();
    out.reserve(end + 16);
    // Which entries of `add` the map already has.
    let mut present = 0u64;
    if !add.is_empty() {
        for entry in entries.clone() {
            let key = entry.key(map);
            for (i, (name, _)) in add.iter().enumerate() {
                if *name == key {
                    present |= 1 << i;
                }
            }
        }
    }
    let added = add.len() as u32 - present.count_ones();
    if added == 0 {
        out.extend_from_slice(&map[..header_end]);
    } else {
        // Writing into a Vec cannot fail.
        let _ = rmp::encode::write_map_len(out, count + added);
    }
    for entry in entries {
        out.extend_from_slice(&map[entry.start as usize..entry.value as usize]);
        if !replace(entry.key(map), entry.value(map), out)? {
            out.extend_from_slice(entry.value(map));
        }
    }
    for (i, (key, value)) in add.iter().enumerate() {
        if present & (1 << i) == 0 {
            write_str_bytes(out, key);
            out.extend_from_slice(value);
        }
    }
    Ok(())
}

/// Sets `key` to the already-encoded `value` in the map `map` (replaced, or appended), into
/// `out`. Every other byte is copied as it is.
pub fn with_entry(map: &[u8], key: &[u8], value: &[u8], out: &mut Vec<u8>) -> Result<()> {
    splice::<Error>(
        map,
        out,
        |name, _, out| {
            let hit = name == key;
            if hit {
                out.extend_from_slice(value);
            }
            Ok(hit)
        },
        &[(key, value)],
    )
}

/// Writes a string header and its bytes.
fn write_str_bytes(out: &mut Vec<u8>, text: &[u8]) {
    let len = text.len() as u32;
    // Writing into a Vec cannot fail.
    let _ = match len {
        0..=31 => {
            out.push(0xa0 | len as u8);
            Ok(())
        }
        _ => rmp::encode::write_str_len(out, len).map(|_| ()),
    };
    out.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        crate::model::codec::encode(value, &mut out);
        out
    }

    /// Sample payloads: real events and values of every MessagePack type.
    fn samples() -> Vec<Vec<u8>> {
        let mut samples = Vec::new();
        let synth = crate::model::synth::Synth::new(crate::model::synth::SynthConfig::default());
        samples.push(encode(&synth.header()));
        for event in synth.take(6) {
            samples.push(encode(&event));
        }
        samples.push(encode(&serde_json::json!({
            "a": [1, -1, -200, 70000, -70000, 1.5, null, true, false, "x"],
            "b": {"c": {}, "d": [[], [[]]]},
            "s": "s".repeat(40),
            "t": "t".repeat(300),
            "n": [u64::MAX, i64::MIN],
        })));
        samples.push(encode(&crate::model::event::Bytes(vec![7; 300])));
        samples.push(encode(&f32::MAX));
        samples.push(vec![0xd4, 1, 2]); // fixext 1
        samples.push(vec![0xc7, 2, 9, 1, 2]); // ext 8
        samples
    }

    /// Every value in `buf` (recursively) as (start, end), by a reference walk over `read`.
    fn extents(buf: &[u8]) -> Vec<(usize, usize)> {
        fn walk(c: &mut Cursor<'_>, out: &mut Vec<(usize, usize)>) {
            let start = c.offset();
            let slot = out.len();
            out.push((start, 0));
            let items = match c.read().expect("sample decodes") {
                Value::Array(n) => u64::from(n),
                Value::Map(n) => 2 * u64::from(n),
                _ => 0,
            };
            for _ in 0..items {
                walk(c, out);
            }
            out[slot].1 = c.offset();
        }
        let mut out = Vec::new();
        let mut c = Cursor::new(buf);
        walk(&mut c, &mut out);
        assert!(c.is_empty());
        out
    }

    /// Reads everything in `buf` through the typed and generic readers.
    fn read_all(buf: &[u8]) -> Result<()> {
        let mut c = Cursor::new(buf);
        let mut pending = 1u64;
        while pending > 0 {
            pending -= 1;
            match c.read()? {
                Value::Array(n) => pending += u64::from(n),
                Value::Map(n) => pending += 2 * u64::from(n),
                _ => {}
            }
        }
        Ok(())
    }

    #[test]
    fn truncation_at_every_offset_is_a_located_error() {
        for sample in samples() {
            let values = extents(&sample);
            for cut in 0..sample.len() {
                let part = &sample[..cut];
                for result in [Cursor::new(part).skip(), read_all(part)] {
                    let error = result.expect_err("a cut payload does not read");
                    // The error names a value that the cut runs through.
                    assert!(
                        values.iter().any(|&(start, end)| start == error.offset
                            && start <= cut
                            && cut < end),
                        "cut at {cut} of {sample:02x?}: {error:?}"
                    );
                }
                // Every other reader fails cleanly too.
                let _ = map_get(part, b"common");
                let _ = path_get(part, &[b"common", b"timestamp"]);
                let mut out = Vec::new();
                let _ = with_entry(part, b"x", &[0xc0], &mut out);
            }
            let mut c = Cursor::new(&sample);
            c.skip().unwrap();
            assert!(c.is_empty());
        }
    }

    #[test]
    fn errors_keep_the_words_stages_use() {
        let mut c = Cursor::new(&[]);
        assert_eq!(
            c.skip().unwrap_err().to_string(),
            "the record ends inside a value"
        );
        let e = Cursor::new(&[0xa5, b'a']).skip().unwrap_err();
        assert_eq!(e.to_string(), "a value runs past the end of the record");
        assert_eq!(e.offset, 0);
        let e = Cursor::new(&[0xdf, 0xff, 0xff, 0xff, 0xff])
            .skip()
            .unwrap_err();
        assert_eq!(e.problem, Problem::TooManyItems);
        let e = Cursor::new(&[0x91, 0xc1]).skip().unwrap_err();
        assert_eq!(
            (e.offset, e.to_string().as_str()),
            (1, "invalid MessagePack byte 0xc1")
        );
        let e = Cursor::new(&[0x01]).map_len().unwrap_err();
        assert_eq!(
            e.rmp_text(),
            "the type decoded isn't match with the expected one"
        );
        let e = Cursor::new(&[0xde, 0x00]).map_len().unwrap_err();
        assert_eq!(e.rmp_text(), "failed to read MessagePack data");
        let e = Cursor::new(&[]).map_len().unwrap_err();
        assert_eq!(e.rmp_text(), "failed to read MessagePack marker");
    }

    #[test]
    fn reads_every_integer_width_and_sign() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            -1,
            -32,
            -33,
            -129,
            -40000,
            i64::MIN,
            i64::MAX,
        ] {
            let bytes = encode(&v);
            assert_eq!(Cursor::new(&bytes).read(), Ok(Value::Int(v.into())), "{v}");
            assert_eq!(Cursor::new(&bytes).int(), Ok(v), "{v}");
            assert_eq!(
                Cursor::new(&bytes).uint().ok(),
                u64::try_from(v).ok(),
                "{v}"
            );
        }
        let bytes = encode(&u64::MAX);
        assert_eq!(Cursor::new(&bytes).read(), Ok(Value::Int(u64::MAX.into())));
        assert_eq!(Cursor::new(&bytes).uint(), Ok(u64::MAX));
        assert_eq!(
            Cursor::new(&bytes).int().unwrap_err().problem,
            Problem::OutOfRange
        );
        // A signed encoding of a small positive number is still a u64 (serde takes it).
        assert_eq!(Cursor::new(&[0xd0, 0x05]).uint(), Ok(5));
        assert_eq!(
            Cursor::new(&[0xcd, 0x01, 0x00])
                .num::<u8>()
                .unwrap_err()
                .problem,
            Problem::OutOfRange
        );
    }

    #[test]
    fn lookups_and_paths() {
        let event = crate::model::event::Event {
            common: Some(crate::model::event::Common {
                timestamp: 42,
                comm: "curl".into(),
                ..Default::default()
            }),
            drop: Some(crate::model::event::Drop {
                reason: "NETFILTER_DROP".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let payload = encode(&event);
        assert_eq!(map_get(&payload, b"skb"), Ok(None));
        let ts = path_get(&payload, &[b"common", b"timestamp"])
            .unwrap()
            .unwrap();
        assert_eq!(Cursor::new(ts).uint(), Ok(42));
        let reason = path_get(&payload, &[b"drop", b"reason"]).unwrap().unwrap();
        assert_eq!(Cursor::new(reason).str(), Ok("NETFILTER_DROP"));
        assert_eq!(path_get(&payload, &[b"common", b"comm", b"x"]), Ok(None));
        assert_eq!(path_get(&payload, &[]), Ok(Some(&payload[..])));
        // Entries cover the map exactly.
        let mut c = Cursor::new(&payload);
        let n = c.map_len().unwrap();
        let entries: Vec<Entry> = c.entries(n).map(Result::unwrap).collect();
        assert_eq!(entries[0].start, 1);
        assert_eq!(entries.last().unwrap().end as usize, payload.len());
        assert_eq!(entries[0].key(&payload), b"common");
    }

    #[test]
    fn splice_replaces_or_appends_and_keeps_every_other_byte() {
        let mut map = std::collections::BTreeMap::new();
        map.insert("a", 1u64);
        map.insert("b", 2);
        let payload = encode(&map);
        let mut out = Vec::new();
        with_entry(&payload, b"b", &encode(&300u64), &mut out).unwrap();
        let mut expect = std::collections::BTreeMap::new();
        expect.insert("a", 1u64);
        expect.insert("b", 300);
        assert_eq!(out, encode(&expect));
        with_entry(&payload, b"c", &encode(&"x"), &mut out).unwrap();
        let back: std::collections::BTreeMap<String, serde_json::Value> =
            rmp_serde::from_slice(&out).unwrap();
        assert_eq!(back["c"], "x");
        assert_eq!(back.len(), 3);
        // Replace one, keep one, add one, in one pass.
        splice::<Error>(
            &payload,
            &mut out,
            |key, _, out| {
                if key == b"a" {
                    out.push(0x07);
                    return Ok(true);
                }
                Ok(false)
            },
            &[(b"b", &[0xc0]), (b"z", &[0xc3])],
        )
        .unwrap();
        assert_eq!(
            out,
            [0x83, 0xa1, b'a', 0x07, 0xa1, b'b', 0x02, 0xa1, b'z', 0xc3]
        );
        assert!(with_entry(&[0x81, 0xa1], b"a", &[0xc0], &mut out).is_err());
    }

    /// Walks `value` with the reader into the serde_json value rmp-serde gives.
    fn to_json(c: &mut Cursor<'_>) -> Result<serde_json::Value> {
        use serde_json::Value as J;
        Ok(match c.read()? {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(b),
            Value::Int(v) => match i64::try_from(v) {
                Ok(v) => J::from(v),
                Err(_) => J::from(v as u64),
            },
            Value::Float(f) => J::from(f),
            Value::Str(s) => J::String(String::from_utf8(s.to_vec()).expect("UTF-8")),
            Value::Bin(b) => J::Array(b.iter().map(|&x| J::from(x)).collect()),
            Value::Array(n) => J::Array((0..n).map(|_| to_json(c)).collect::<Result<_>>()?),
            Value::Map(n) => {
                let mut map = serde_json::Map::new();
                for _ in 0..n {
                    let key = c.str()?.to_string();
                    map.insert(key, to_json(c)?);
                }
                J::Object(map)
            }
            Value::Ext => J::Null,
        })
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<u64>().prop_map(J::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(J::from),
            ".{0,40}".prop_map(J::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..20).prop_map(J::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..20)
                    .prop_map(|m| J::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_what_rmp_serde_reads(value in json_value()) {
            let bytes = encode(&value);
            let expected: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
            let mut c = Cursor::new(&bytes);
            prop_assert_eq!(to_json(&mut c).unwrap(), expected);
            prop_assert!(c.is_empty());
            let mut c = Cursor::new(&bytes);
            c.skip().unwrap();
            prop_assert!(c.is_empty());
            // Every top-level key is found, with the bytes serde decodes to its value.
            if let serde_json::Value::Object(map) = &value {
                for (key, inner) in map {
                    let found = map_get(&bytes, key.as_bytes()).unwrap().unwrap();
                    let decoded: serde_json::Value = rmp_serde::from_slice(found).unwrap();
                    let reencoded: serde_json::Value =
                        rmp_serde::from_slice(&encode(inner)).unwrap();
                    prop_assert_eq!(decoded, reencoded);
                }
            }
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Cursor::new(&bytes).skip();
            let _ = read_all(&bytes);
            let _ = map_get(&bytes, b"a");
            let mut out = Vec::new();
            let _ = with_entry(&bytes, b"a", &[0xc0], &mut out);
            // skip and read agree on where a value ends.
            let mut a = Cursor::new(&bytes);
            let mut b = Cursor::new(&bytes);
            if a.skip().is_ok() && read_all(&bytes).is_ok() {
                let _ = b.value();
                prop_assert_eq!(a.offset(), b.offset());
            }
        }
    }
}
