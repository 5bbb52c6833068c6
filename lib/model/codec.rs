//! The stream codec: magic, frames, and the raw view of records.
//!
//! Layout (normative text in `schemas/stream.md`):
//! ```text
//! stream  = section+
//! section = magic header-frame frame*
//! magic   = C1 'T' 'R' 'A' 'I' 'L' major minor          (8 bytes)
//! frame   = tag:u8 length:u32le payload[length]          (payload: one MessagePack map)
//! ```
//! Tags are ASCII capital letters: `H` header, `E` event, `L` lost, `T` trailer; any other letter
//! is a record kind this build does not know, which readers skip and pass-through stages forward
//! unchanged. Any other tag byte means corruption. Since a tag is never `0xC1`, a magic at a frame
//! boundary (concatenated streams) is unambiguous.
//!
//! The reader bounds every length before allocating ([`MAX_FRAME`]), distinguishes a clean end at
//! a frame boundary from truncation, and reports the byte offset of whatever it rejects.

use std::io::{self, BufRead, Write};
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::error::{ErrorKind, StreamError};
use crate::model::event::{Event, Header, Lost, Trailer, FORMAT_MAJOR, FORMAT_MINOR};

/// First six bytes of every section. `0xC1` is never valid MessagePack, and no JSON, pcap or
/// pcapng file starts with it.
pub const MAGIC: [u8; 6] = [0xC1, b'T', b'R', b'A', b'I', b'L'];
/// Largest payload a reader accepts. Events carry at most 64 KiB of packet plus metadata; a
/// larger length means a corrupt frame, and must not turn into a huge allocation.
pub const MAX_FRAME: u32 = 16 << 20;

/// Record kind, from the frame tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Header,
    Event,
    Lost,
    Trailer,
    /// A tag this build does not know: skipped by readers, forwarded by pass-through stages.
    Other(u8),
}

impl FrameKind {
    pub fn tag(self) -> u8 {
        match self {
            FrameKind::Header => b'H',
            FrameKind::Event => b'E',
            FrameKind::Lost => b'L',
            FrameKind::Trailer => b'T',
            FrameKind::Other(tag) => tag,
        }
    }

    fn from_tag(tag: u8) -> FrameKind {
        match tag {
            b'H' => FrameKind::Header,
            b'E' => FrameKind::Event,
            b'L' => FrameKind::Lost,
            b'T' => FrameKind::Trailer,
            other => FrameKind::Other(other),
        }
    }
}

/// One record as read: its kind, where it started, and its undecoded payload.
#[derive(Clone, Debug)]
pub struct Frame {
    pub kind: FrameKind,
    /// Byte offset of the frame (of the magic, for a header) within its input.
    pub offset: u64,
    /// Format version of the section this frame belongs to.
    pub version: (u8, u8),
    pub payload: Vec<u8>,
}

impl Default for Frame {
    fn default() -> Self {
        Frame {
            kind: FrameKind::Event,
            offset: 0,
            version: (FORMAT_MAJOR, FORMAT_MINOR),
            payload: Vec::new(),
        }
    }
}

/// Reads frames from one input. `name` is how errors refer to the input (a path or `stdin`).
pub struct Reader<R> {
    inner: R,
    name: String,
    offset: u64,
    version: Option<(u8, u8)>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(inner: R, name: impl Into<String>) -> Self {
        Reader {
            inner,
            name: name.into(),
            offset: 0,
            version: None,
        }
    }

    /// The input's name, as errors show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, offset: u64, kind: ErrorKind) -> StreamError {
        StreamError {
            input: self.name.clone(),
            offset,
            kind,
        }
    }

    /// Reads the next frame into `frame` (reusing its buffer). Returns `Ok(false)` at a clean end
    /// of input, i.e. at a frame boundary after at least one section.
    pub fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, StreamError> {
        let start = self.offset;
        let first = match self.fill_peek() {
            Ok(Some(byte)) => byte,
            Ok(None) if self.version.is_some() => return Ok(false),
            Ok(None) => return Err(self.error(0, ErrorKind::Empty)),
            Err(e) => return Err(self.error(start, ErrorKind::Io(e))),
        };
        if first == MAGIC[0] {
            let mut magic = [0u8; 8];
            self.read_exact_at(&mut magic, start, "section magic")?;
            if magic[..6] != MAGIC {
                return Err(self.error(start, ErrorKind::BadMagic));
            }
            let version = (magic[6], magic[7]);
            if version.0 != FORMAT_MAJOR {
                return Err(self.error(
                    start,
                    ErrorKind::UnsupportedVersion {
                        found: version,
                        supported: FORMAT_MAJOR,
                    },
                ));
            }
            self.version = Some(version);
            let header_offset = self.offset;
            let kind = self.read_frame(frame)?;
            if kind != FrameKind::Header {
                return Err(self.error(header_offset, ErrorKind::MissingHeader));
            }
            frame.offset = start;
            return Ok(true);
        }
        let Some(version) = self.version else {
            let what = sniff(self.inner.fill_buf().unwrap_or(&[]));
            return Err(self.error(0, ErrorKind::NotAStream(what)));
        };
        let kind = self.read_frame(frame)?;
        if kind == FrameKind::Header {
            // A header is only valid right after a magic: this is a corrupt or hand-made stream.
            return Err(self.error(start, ErrorKind::MissingMagic));
        }
        frame.version = version;
        Ok(true)
    }

    fn read_frame(&mut self, frame: &mut Frame) -> Result<FrameKind, StreamError> {
        let start = self.offset;
        let mut head = [0u8; 5];
        self.read_exact_at(&mut head, start, "frame header")?;
        if !head[0].is_ascii_uppercase() {
            return Err(self.error(start, ErrorKind::BadTag(head[0])));
        }
        let kind = FrameKind::from_tag(head[0]);
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_FRAME {
            return Err(self.error(
                start,
                ErrorKind::FrameTooLarge {
                    length: len,
                    limit: MAX_FRAME,
                },
            ));
        }
        frame.payload.clear();
        frame.payload.resize(len as usize, 0);
        // Borrow dance: read into the frame's buffer without holding `self` mutably twice.
        let mut payload = std::mem::take(&mut frame.payload);
        let result = self.read_exact_at(&mut payload, start, "frame payload");
        frame.payload = payload;
        result?;
        frame.kind = kind;
        frame.offset = start;
        frame.version = self.version.unwrap_or((FORMAT_MAJOR, FORMAT_MINOR));
        Ok(kind)
    }

    fn fill_peek(&mut self) -> io::Result<Option<u8>> {
        loop {
            match self.inner.fill_buf() {
                Ok(buf) => return Ok(buf.first().copied()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn read_exact_at(
        &mut self,
        buf: &mut [u8],
        start: u64,
        what: &'static str,
    ) -> Result<(), StreamError> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    self.offset += done as u64;
                    return Err(self.error(
                        start,
                        ErrorKind::Truncated {
                            what,
                            needed: (self.offset - start) + (buf.len() - done) as u64,
                            available: self.offset - start,
                        },
                    ));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.error(self.offset + done as u64, ErrorKind::Io(e))),
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }
}

impl<T: io::Read> Reader<io::BufReader<T>> {
    /// Whether everything read so far has been consumed, i.e. the next frame needs a read that
    /// may block. Live stages flush their output then, so downstream sees each batch at once.
    pub fn input_drained(&self) -> bool {
        self.inner.buffer().is_empty()
    }
}

/// Names what a non-trail input looks like, for the error message.
pub fn sniff(start: &[u8]) -> &'static str {
    match start {
        [0xd4, 0xc3, 0xb2, 0xa1, ..]
        | [0xa1, 0xb2, 0xc3, 0xd4, ..]
        | [0x4d, 0x3c, 0xb2, 0xa1, ..]
        | [0xa1, 0xb2, 0x3c, 0x4d, ..] => "a pcap file (convert it with trail-from-pcap)",
        [0x0a, 0x0d, 0x0d, 0x0a, ..] => "a pcapng file (convert it with trail-from-pcap)",
        [b'{' | b'[', ..] => "JSON, not a trail stream",
        [0x80..=0x8f | 0xde | 0xdf, ..] => "bare MessagePack without the trail magic",
        _ => "not a trail stream (no magic)",
    }
}

/// Decodes a payload into a typed record; errors carry the frame's position.
pub fn decode<T: DeserializeOwned>(frame: &Frame, input: &str) -> Result<T, StreamError> {
    rmp_serde::from_slice(&frame.payload).map_err(|e| StreamError {
        input: input.to_string(),
        offset: frame.offset,
        kind: ErrorKind::Corrupt(e.to_string()),
    })
}

/// Encodes a record as a named MessagePack map into `out` (cleared first).
pub fn encode<T: Serialize>(record: &T, out: &mut Vec<u8>) {
    out.clear();
    let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
    // Writing to a Vec cannot fail, and our types contain only serializable values.
    record
        .serialize(&mut ser)
        .expect("serializing a trail record into memory cannot fail");
}

/// Writes sections and frames through one buffered writer.
pub struct Writer<W: Write> {
    inner: io::BufWriter<W>,
    scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W) -> Self {
        Writer {
            inner: io::BufWriter::with_capacity(256 * 1024, inner),
            scratch: Vec::with_capacity(4096),
        }
    }

    /// Starts a section: magic with `version`, then the header payload (a MessagePack map).
    pub fn write_header_payload(&mut self, version: (u8, u8), payload: &[u8]) -> io::Result<()> {
        self.inner.write_all(&MAGIC)?;
        self.inner.write_all(&[version.0, version.1])?;
        self.write_frame(FrameKind::Header, payload)
    }

    pub fn write_header(&mut self, header: &Header) -> io::Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        encode(header, &mut scratch);
        let result = self.write_header_payload((FORMAT_MAJOR, FORMAT_MINOR), &scratch);
        self.scratch = scratch;
        result
    }

    /// Writes one frame. For a header frame use [`Writer::write_header_payload`], which adds the
    /// magic a header needs.
    pub fn write_frame(&mut self, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len <= MAX_FRAME)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "record larger than 16 MiB")
            })?;
        let mut head = [0u8; 5];
        head[0] = kind.tag();
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.inner.write_all(&head)?;
        self.inner.write_all(payload)
    }

    /// Forwards a frame as read, magic included for headers.
    pub fn forward(&mut self, frame: &Frame) -> io::Result<()> {
        match frame.kind {
            FrameKind::Header => self.write_header_payload(frame.version, &frame.payload),
            kind => self.write_frame(kind, &frame.payload),
        }
    }

    fn write_record<T: Serialize>(&mut self, kind: FrameKind, record: &T) -> io::Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        encode(record, &mut scratch);
        let result = self.write_frame(kind, &scratch);
        self.scratch = scratch;
        result
    }

    pub fn write_event(&mut self, event: &Event) -> io::Result<()> {
        self.write_record(FrameKind::Event, event)
    }

    pub fn write_lost(&mut self, lost: &Lost) -> io::Result<()> {
        self.write_record(FrameKind::Lost, lost)
    }

    pub fn write_trailer(&mut self, trailer: &Trailer) -> io::Result<()> {
        self.write_record(FrameKind::Trailer, trailer)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> io::Result<W> {
        self.inner.into_inner().map_err(|e| e.into_error())
    }
}

/// The raw view of one MessagePack map (an event or a header): where each key's value lies in
/// the payload, without decoding the values. Lets stages read one section, or replace one, while
/// every other byte stays as the producer wrote it.
#[derive(Debug, Default)]
pub struct RawMap {
    /// (key bytes, value bytes) as ranges of the payload, in payload order. Ranges rather than
    /// owned keys: indexing a record allocates nothing but this vector.
    entries: Vec<(Range<usize>, Range<usize>)>,
}

impl RawMap {
    /// Indexes a payload that holds one MessagePack map with string keys.
    pub fn parse(payload: &[u8]) -> Result<RawMap, String> {
        let mut rest = payload;
        let count = rmp::decode::read_map_len(&mut rest)
            .map_err(|e| format!("record is not a map: {e}"))?;
        let mut entries = Vec::with_capacity(count.min(64) as usize);
        for _ in 0..count {
            let key_len = read_key_len(&mut rest)?;
            if key_len > rest.len() {
                return Err("map key runs past the end of the record".into());
            }
            let key = &rest[..key_len];
            // Keys are ASCII names: the full UTF-8 check only for the odd one that is not.
            if !key.is_ascii() && std::str::from_utf8(key).is_err() {
                return Err("map key is not UTF-8".into());
            }
            let key_start = payload.len() - rest.len();
            rest = &rest[key_len..];
            let start = payload.len() - rest.len();
            skip(&mut rest).map_err(str::to_string)?;
            let end = payload.len() - rest.len();
            entries.push((key_start..start, start..end));
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes after the end of the record's map",
                rest.len()
            ));
        }
        Ok(RawMap { entries })
    }

    /// The keys, in payload order. `payload` must be the one this map was parsed from.
    pub fn keys<'a, 'p: 'a>(&'a self, payload: &'p [u8]) -> impl Iterator<Item = &'p str> + 'a {
        self.entries.iter().map(move |(k, _)| key_str(payload, k))
    }

    /// Where the encoded value stored under `key` lies in the payload.
    pub fn range(&self, payload: &[u8], key: &str) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|(k, _)| &payload[k.clone()] == key.as_bytes())
            .map(|(_, range)| range.clone())
    }

    /// The encoded value stored under `key`.
    pub fn get<'p>(&self, payload: &'p [u8], key: &str) -> Option<&'p [u8]> {
        self.entries
            .iter()
            .find(|(k, _)| &payload[k.clone()] == key.as_bytes())
            .map(|(_, range)| &payload[range.clone()])
    }

    /// Re-encodes the map with `key` set to the already-encoded `value` (replaced in place, or
    /// appended). Every other entry is copied byte for byte.
    pub fn with_entry(&self, payload: &[u8], key: &str, value: &[u8], out: &mut Vec<u8>) {
        self.splice(
            payload,
            out,
            |name, _, out| {
                let hit = name == key;
                if hit {
                    out.extend_from_slice(value);
                }
                hit
            },
            &[(key, value)],
        );
    }

    /// Re-encodes the map into `out`: for each entry, `replace(key, value, out)` may write a new
    /// encoded value into `out` and return true; otherwise the value is copied byte for byte.
    /// Entries of `add` whose key is absent are appended, in order.
    pub fn splice(
        &self,
        payload: &[u8],
        out: &mut Vec<u8>,
        mut replace: impl FnMut(&str, &[u8], &mut Vec<u8>) -> bool,
        add: &[(&str, &[u8])],
    ) {
        out.clear();
        let added: Vec<&(&str, &[u8])> = add
            .iter()
            .filter(|(key, _)| self.get(payload, key).is_none())
            .collect();
        // Writing into a Vec cannot fail.
        let _ = rmp::encode::write_map_len(out, (self.entries.len() + added.len()) as u32);
        for (k, range) in &self.entries {
            let name = key_str(payload, k);
            let value = &payload[range.clone()];
            let _ = rmp::encode::write_str(out, name);
            if !replace(name, value, out) {
                out.extend_from_slice(value);
            }
        }
        for (key, value) in added {
            let _ = rmp::encode::write_str(out, key);
            out.extend_from_slice(value);
        }
    }
}

/// Reads the header of a map key (a string) and returns its length.
#[inline]
fn read_key_len(rest: &mut &[u8]) -> Result<usize, String> {
    // Fast path: trail's keys are short strings (fixstr), one byte of header.
    if let Some((&marker, tail)) = rest.split_first() {
        if marker & 0xe0 == 0xa0 {
            *rest = tail;
            return Ok(usize::from(marker & 0x1f));
        }
    }
    rmp::decode::read_str_len(rest)
        .map(|len| len as usize)
        .map_err(|e| format!("map key is not a string: {e}"))
}

/// The encoded value stored under `key` in the MessagePack map `map`, found by walking the map
/// up to that key: for reading one field of a section without indexing the whole section.
pub fn map_value<'p>(map: &'p [u8], key: &str) -> Result<Option<&'p [u8]>, String> {
    let mut rest = map;
    let count = rmp::decode::read_map_len(&mut rest).map_err(|e| format!("not a map: {e}"))?;
    for _ in 0..count {
        let key_len = read_key_len(&mut rest)?;
        if key_len > rest.len() {
            return Err("map key runs past the end of the record".into());
        }
        let found = &rest[..key_len] == key.as_bytes();
        rest = &rest[key_len..];
        let start = rest;
        skip(&mut rest).map_err(str::to_string)?;
        if found {
            return Ok(Some(&start[..start.len() - rest.len()]));
        }
    }
    Ok(None)
}

/// A key range validated as UTF-8 by [`RawMap::parse`].
fn key_str<'p>(payload: &'p [u8], range: &Range<usize>) -> &'p str {
    std::str::from_utf8(&payload[range.clone()]).unwrap_or("")
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

/// Advances the cursor past one whole value.
///
/// This is where stages that index records spend their time (trail-filter steps over every
/// section before the ones an expression reads; [`RawMap::parse`] over every section), so it
/// works on marker bytes directly and iterates with a count of values still to skip instead of
/// recursing: no nesting depth can exhaust the stack. Checks every length against what is left.
pub fn skip(rest: &mut &[u8]) -> Result<(), &'static str> {
    let buf = *rest;
    // A position in `buf` rather than a shrinking slice: one bounds check per value.
    let mut at = 0usize;
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let Some(&marker) = buf.get(at) else {
            return Err("the record ends inside a value");
        };
        at += 1;
        // Most values are scalars of a size the marker alone gives: one table look-up and one
        // well-predicted branch, instead of a many-way jump on every value.
        let fixed = FIXED_SIZE[usize::from(marker)];
        if fixed != VARIABLE {
            at += usize::from(fixed);
            if at > buf.len() {
                return Err("a value runs past the end of the record");
            }
            continue;
        }
        let mut tail = &buf[at..];
        let (len, items): (u64, u64) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (be(&mut tail, 1)?, 0),
            0xc5 | 0xda => (be(&mut tail, 2)?, 0),
            0xc6 | 0xdb => (be(&mut tail, 4)?, 0),
            0xc7 => (be(&mut tail, 1)? + 1, 0),
            0xc8 => (be(&mut tail, 2)? + 1, 0),
            0xc9 => (be(&mut tail, 4)? + 1, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, be(&mut tail, 2)?),
            0xdd => (0, be(&mut tail, 4)?),
            0xde => (0, 2 * be(&mut tail, 2)?),
            0xdf => (0, 2 * be(&mut tail, 4)?),
            0xc1 => return Err("invalid MessagePack byte 0xc1"),
        };
        if len > tail.len() as u64 {
            return Err("a value runs past the end of the record");
        }
        at = buf.len() - tail.len() + len as usize;
        pending += items;
        // Each value takes at least a byte: a larger count is corrupt (and would loop for long).
        if pending > (buf.len() - at) as u64 {
            return Err("a container claims more items than the record holds");
        }
    }
    *rest = &buf[at..];
    Ok(())
}

fn be(rest: &mut &[u8], n: usize) -> Result<u64, &'static str> {
    if rest.len() < n {
        return Err("a value runs past the end of the record");
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// Decodes just one section of an event payload (e.g. `tracking`), without the others.
pub fn decode_section<T: DeserializeOwned>(
    payload: &[u8],
    index: &RawMap,
    key: &str,
) -> Option<Result<T, String>> {
    index
        .get(payload, key)
        .map(|bytes| rmp_serde::from_slice(bytes).map_err(|e| e.to_string()))
}
