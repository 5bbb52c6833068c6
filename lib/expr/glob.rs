//! The one glob of trail: every probe pattern in every tool (`trail-filter --probe` and its
//! `~`/`!~` operators, `trail-to-pcap --probe`, `trail-capture -p` and `--list-probes`) means the
//! same thing: `*` any run, `?` any one byte, `[abc]` `[a-z]` `[!a]` (or `[^a]`) classes, `\`
//! escapes the next character; a pattern matches the whole text.
//!
//! Matching is iterative with one backtrack point (the latest `*`), so it takes at most
//! O(pattern × text) steps, linear in the text for a given pattern, with no recursion and no
//! exponential blow-up on patterns like `*a*a*a*b`. A pattern is compiled once with [`Glob::new`]
//! where it is matched against many texts.

/// A shell-style glob: `*` any run, `?` any one byte, `[abc]`, `[a-z]`, `[!a]` classes, `\`
/// escapes the next character. Matches whole strings.
#[derive(Clone, Debug)]
pub struct Glob {
    items: Vec<GlobItem>,
}

#[derive(Clone, Debug)]
enum GlobItem {
    Byte(u8),
    Any,
    Star,
    Class { negate: bool, ranges: Vec<(u8, u8)> },
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Glob {
        let mut items = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            match pattern[i] {
                b'*' => items.push(GlobItem::Star),
                b'?' => items.push(GlobItem::Any),
                b'\\' if i + 1 < pattern.len() => {
                    i += 1;
                    items.push(GlobItem::Byte(pattern[i]));
                }
                b'[' => {
                    if let Some((class, len)) = class(&pattern[i..]) {
                        items.push(class);
                        i += len;
                        continue;
                    }
                    items.push(GlobItem::Byte(b'['));
                }
                byte => items.push(GlobItem::Byte(byte)),
            }
            i += 1;
        }
        Glob { items }
    }

    pub fn matches(&self, text: &[u8]) -> bool {
        // Iterative matching with one backtrack point: the latest `*` and where it resumed.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            let step = match self.items.get(p) {
                Some(GlobItem::Star) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(GlobItem::Byte(b)) => *b == text[t],
                Some(GlobItem::Any) => true,
                Some(GlobItem::Class { negate, ranges }) => {
                    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&text[t])) != *negate
                }
                None => false,
            };
            if step {
                p += 1;
                t += 1;
            } else if let Some((star_p, star_t)) = star {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            } else {
                return false;
            }
        }
        self.items[p..]
            .iter()
            .all(|item| matches!(item, GlobItem::Star))
    }
}

/// A `[...]` class at the start of `pattern`: the item and the pattern bytes it takes, or
/// `None` when the bracket is not closed (then it is a literal `[`).
fn class(pattern: &[u8]) -> Option<(GlobItem, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let byte = *pattern.get(i)?;
        if byte == b']' && !first {
            return Some((GlobItem::Class { negate, ranges }, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|b| *b != b']') {
            ranges.push((byte, pattern[i + 2]));
            i += 3;
        } else {
            ranges.push((byte, byte));
            i += 1;
        }
    }
}

/// Whether `pattern` matches all of `text` (compiles the pattern each call; use [`Glob`] in loops).
pub fn matches(pattern: &str, text: &str) -> bool {
    Glob::new(pattern.as_bytes()).matches(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("net:*", "net:netif_rx", true),
            ("net:*", "skb:kfree_skb", false),
            ("*kfree*", "tp:skb:kfree_skb", true),
            ("tp:skb:?free_skb", "tp:skb:kfree_skb", true),
            ("veth[0-9]", "veth3", true),
            ("veth[!0-9]", "veth3", false),
            ("veth[!0-9]", "vethx", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("[x", "[x", true),
            ("*a", "bbbba", true),
            ("n?t", "net", true),
            ("net_*", "netif_rx", false),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern.as_bytes()).matches(text.as_bytes()),
                *expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn long_texts_take_linear_time() {
        // A pattern that makes a backtracking matcher exponential.
        let text = "a".repeat(100_000);
        assert!(!matches("*a*a*a*a*a*a*a*b", &text));
        assert!(matches("*a*a*a*a*a*a*a*", &text));
    }
}
