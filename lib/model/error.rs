//! Typed errors for stream input, so that callers can branch on them (exit status 2 for bad
//! input, clean exit on a broken pipe) while messages name the input and byte offset. A leaf
//! module: the values a message quotes (limits, versions) travel in the error itself.

use std::fmt;
use std::io;

/// Something wrong with an input stream, located by input name and byte offset.
#[derive(Debug)]
pub struct StreamError {
    /// A path, or `stdin`.
    pub input: String,
    /// Byte offset of the frame (or field) at fault.
    pub offset: u64,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    /// Reading failed; the `io::Error` stays reachable through `source()`.
    Io(io::Error),
    /// No bytes at all.
    Empty,
    /// The input is something else; the text names what it looks like.
    NotAStream(&'static str),
    BadMagic,
    /// A section of format `found` (major, minor) where this build reads `supported`.x.
    UnsupportedVersion {
        found: (u8, u8),
        supported: u8,
    },
    /// A magic not followed by a header frame.
    MissingHeader,
    /// A header frame without a magic before it.
    MissingMagic,
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
    },
    FrameTooLarge {
        length: u32,
        limit: u32,
    },
    /// A frame tag that is not an ASCII capital letter.
    BadTag(u8),
    /// A pcap or pcapng input that cannot be read (trail-from-pcap).
    BadPcap(String),
    /// The frame is intact but its payload does not decode.
    Corrupt(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io(e) => write!(f, "read error: {e}"),
            ErrorKind::Empty => f.write_str("empty input, expected a trail stream"),
            ErrorKind::NotAStream(what) => write!(f, "not a trail stream: this looks like {what}"),
            ErrorKind::BadMagic => f.write_str("corrupt section magic"),
            ErrorKind::UnsupportedVersion {
                found: (major, minor),
                supported,
            } => write!(
                f,
                "stream format version {major}.{minor} is not supported (this build reads {supported}.x)"
            ),
            ErrorKind::MissingHeader => {
                f.write_str("section magic not followed by a header record")
            }
            ErrorKind::MissingMagic => f.write_str("header record without a section magic"),
            ErrorKind::Truncated {
                what,
                needed,
                available,
            } => {
                write!(
                    f,
                    "truncated {what}: needed {needed} bytes, input ends after {available}"
                )
            }
            ErrorKind::FrameTooLarge { length, limit } => write!(
                f,
                "corrupt frame: length {length} exceeds the {limit} byte limit"
            ),
            ErrorKind::BadTag(tag) => write!(f, "corrupt frame: invalid record tag {tag:#04x}"),
            ErrorKind::BadPcap(why) => write!(f, "bad pcap input: {why}"),
            ErrorKind::Corrupt(why) => write!(f, "corrupt record: {why}"),
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: byte {}: {}", self.input, self.offset, self.kind)
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl StreamError {
    /// Whether the fault is in the input's content (exit status 2) rather than in reading it.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self.kind, ErrorKind::Io(_))
    }
}

/// A usage problem found after argument parsing (bad filter expression, unknown probe, ...):
/// reported like clap's own errors, with exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
