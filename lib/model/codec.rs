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
use crate::model::msgpack::{self, Cursor, Entry, Problem};

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
/// every other byte stays as the producer wrote it. Built with the one reader,
/// [`crate::model::msgpack`]; stricter than its lookups: every key must be a UTF-8 string and
/// nothing may follow the map.
#[derive(Debug, Default)]
pub struct RawMap {
    /// End of the map header.
    header_end: u32,
    /// Entries as offsets into the payload, in payload order: indexing a record allocates
    /// nothing but this vector.
    entries: Vec<Entry>,
}

impl RawMap {
    /// Indexes a payload that holds one MessagePack map with string keys.
    pub fn parse(payload: &[u8]) -> Result<RawMap, String> {
        if u32::try_from(payload.len()).is_err() {
            return Err("record larger than 4 GiB".into());
        }
        let mut cursor = Cursor::new(payload);
        let count = cursor
            .map_len()
            .map_err(|e| format!("record is not a map: {}", e.rmp_text()))?;
        let header_end = cursor.offset() as u32;
        let mut entries = Vec::with_capacity(count.min(64) as usize);
        for _ in 0..count {
            let start = cursor.offset();
            let key = string_key(&mut cursor)?;
            // Keys are ASCII names: the full UTF-8 check only for the odd one that is not.
            if !key.is_ascii() && std::str::from_utf8(key).is_err() {
                return Err("map key is not UTF-8".into());
            }
            let value = cursor.offset();
            cursor.skip().map_err(|e| e.to_string())?;
            // Offsets fit: the payload is shorter than 4 GiB (checked above).
            entries.push(Entry {
                start: start as u32,
                key: (value - key.len()) as u32,
                value: value as u32,
                end: cursor.offset() as u32,
            });
        }
        if !cursor.is_empty() {
            return Err(format!(
                "{} bytes after the end of the record's map",
                cursor.rest().len()
            ));
        }
        Ok(RawMap {
            header_end,
            entries,
        })
    }

    /// The keys, in payload order. `payload` must be the one this map was parsed from.
    pub fn keys<'a, 'p: 'a>(&'a self, payload: &'p [u8]) -> impl Iterator<Item = &'p str> + 'a {
        self.entries.iter().map(move |e| key_str(e.key(payload)))
    }

    /// Where the encoded value stored under `key` lies in the payload.
    pub fn range(&self, payload: &[u8], key: &str) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|e| e.key(payload) == key.as_bytes())
            .map(Entry::value_range)
    }

    /// The encoded value stored under `key`.
    pub fn get<'p>(&self, payload: &'p [u8], key: &str) -> Option<&'p [u8]> {
        self.entries
            .iter()
            .find(|e| e.key(payload) == key.as_bytes())
            .map(|e| e.value(payload))
    }

    /// Re-encodes the map with `key` set to the already-encoded `value` (replaced in place, or
    /// appended). Every other byte is copied as it is.
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
    /// Entries of `add` whose key is absent are appended, in order (at most 64).
    pub fn splice(
        &self,
        payload: &[u8],
        out: &mut Vec<u8>,
        mut replace: impl FnMut(&str, &[u8], &mut Vec<u8>) -> bool,
        add: &[(&str, &[u8])],
    ) {
        let mut added = [(&[][..], &[][..]); 64];
        for (slot, (key, value)) in added.iter_mut().zip(add) {
            *slot = (key.as_bytes(), value);
        }
        let end = self.entries.last().map_or(self.header_end, |e| e.end) as usize;
        let result: Result<(), std::convert::Infallible> = msgpack::splice_entries(
            payload,
            self.header_end as usize,
            self.entries.len() as u32,
            self.entries.iter().copied(),
            end,
            out,
            |key, value, out| Ok(replace(key_str(key), value, out)),
            &added[..add.len().min(64)],
        );
        let _ = result;
    }
}

/// Reads a map key, which must be a string; errors in the words this module always used.
#[inline]
fn string_key<'a>(cursor: &mut Cursor<'a>) -> Result<&'a [u8], String> {
    let key = cursor.str_bytes().map_err(|e| match e.problem {
        Problem::PastEnd => "map key runs past the end of the record".to_string(),
        _ => format!("map key is not a string: {}", e.rmp_text()),
    })?;
    Ok(key)
}

/// The encoded value stored under `key` in the MessagePack map `map`, found by walking the map
/// up to that key: for reading one field of a section without indexing the whole section. Keys
/// must be strings, as in [`RawMap::parse`].
pub fn map_value<'p>(map: &'p [u8], key: &str) -> Result<Option<&'p [u8]>, String> {
    let mut cursor = Cursor::new(map);
    let count = cursor
        .map_len()
        .map_err(|e| format!("not a map: {}", e.rmp_text()))?;
    for _ in 0..count {
        let found = string_key(&mut cursor)? == key.as_bytes();
        let value = cursor.value().map_err(|e| e.to_string())?;
        if found {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// A key validated as UTF-8 by [`RawMap::parse`].
fn key_str(key: &[u8]) -> &str {
    std::str::from_utf8(key).unwrap_or("")
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
