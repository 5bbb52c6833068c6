//! Primitives of the JSON rendering, shared by the sections' writers and print's: objects
//! written straight into a buffer with the bytes `serde_json` writes for a `serde_json::Value`
//! (keys in sorted order, strings escaped as serde_json escapes them, byte strings as lowercase
//! hex). Contract in `print/json.rs`.

/// A JSON object being written: keys must come in sorted order (callers' duty).
pub struct Object<'b> {
    out: &'b mut Vec<u8>,
    empty: bool,
}

impl<'b> Object<'b> {
    pub fn new(out: &'b mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `"key":` (after a comma if needed) and returns the buffer for the value.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        string(self.out, key);
        self.out.push(b':');
        self.out
    }

    pub fn int(&mut self, key: &str, value: impl itoa::Integer) {
        int(self.key(key), value);
    }

    /// An optional number, left out when `None` (serde's `skip_serializing_if`).
    pub fn opt_int(&mut self, key: &str, value: Option<impl itoa::Integer>) {
        if let Some(value) = value {
            self.int(key, value);
        }
    }

    pub fn str(&mut self, key: &str, value: &str) {
        string(self.key(key), value);
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key)
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

pub fn int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A JSON string as serde_json writes it: copied as is unless it holds a character JSON
/// requires escaping (control characters, `"` and `\`), then serde_json's own escaping.
pub fn string(out: &mut Vec<u8>, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// Bytes as a string of lowercase hex ([`crate::model::event::Bytes`] in JSON).
pub fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 2);
    out.push(b'"');
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}
