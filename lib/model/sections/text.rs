//! Primitives of the text rendering, shared by the sections' text pieces and print's layout:
//! numbers written into a reused `String` without `core::fmt` (trail-print's speed, see
//! bench/results.md).

/// Appends an integer in decimal.
pub fn push_int(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Appends `value` in decimal, zero-padded to `width` digits.
pub fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Appends `value` in lowercase hex of at least `min_digits` digits (zero-padded), after `0x`
/// with `prefix`: `{:x}`, `{:#x}` and `{:#06x}` without `core::fmt`.
pub fn push_hex(out: &mut String, value: u64, min_digits: usize, prefix: bool) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut start = buf.len();
    let mut rest = value;
    while rest != 0 || buf.len() - start < min_digits.max(1) {
        start -= 1;
        buf[start] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
    }
    if prefix {
        out.push_str("0x");
    }
    // Only ASCII hex digits were written.
    out.push_str(std::str::from_utf8(&buf[start..]).unwrap_or_default());
}

/// A space before the next piece of a line, unless the line is empty or already ends in one.
pub fn sep(line: &mut String) {
    if !line.is_empty() && !line.ends_with(' ') {
        line.push(' ');
    }
}
