//! Tokens of the expression language, each with the column where it starts (1-based, in
//! characters), so that every error can point at the offending spot.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// A name: a section, field or keyword (`and`, `has`, `pcap`, ...). Dots are separate tokens.
    Word(String),
    /// A number as written (`12`, `0xff`, `-3`, `2.5`), with its unit if any (`ms`).
    Number {
        text: String,
        unit: Option<String>,
    },
    Str(String),
    Dot,
    LParen,
    RParen,
    /// `==` `!=` `<` `<=` `>` `>=` `~` `!~`
    Op(&'static str),
    Amp,
    AndAnd,
    OrOr,
    Bang,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "'{w}'"),
            Token::Number { text, unit } => write!(f, "'{text}{}'", unit.as_deref().unwrap_or("")),
            Token::Str(s) => write!(f, "\"{s}\""),
            Token::Dot => f.write_str("'.'"),
            Token::LParen => f.write_str("'('"),
            Token::RParen => f.write_str("')'"),
            Token::Op(op) => write!(f, "'{op}'"),
            Token::Amp => f.write_str("'&'"),
            Token::AndAnd => f.write_str("'&&'"),
            Token::OrOr => f.write_str("'||'"),
            Token::Bang => f.write_str("'!'"),
        }
    }
}

/// A problem at a column of the expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expression column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for SyntaxError {}

pub fn error(column: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        column,
        message: message.into(),
    }
}

/// Splits `text` into tokens with their columns.
pub fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (token, len) = match (c, next) {
            ('(', _) => (Token::LParen, 1),
            (')', _) => (Token::RParen, 1),
            ('.', _) => (Token::Dot, 1),
            ('=', Some('=')) => (Token::Op("=="), 2),
            ('=', _) => return Err(error(column, "'=' is not an operator; use '==' to compare")),
            ('!', Some('=')) => (Token::Op("!="), 2),
            ('!', Some('~')) => (Token::Op("!~"), 2),
            ('!', _) => (Token::Bang, 1),
            ('<', Some('=')) => (Token::Op("<="), 2),
            ('<', _) => (Token::Op("<"), 1),
            ('>', Some('=')) => (Token::Op(">="), 2),
            ('>', _) => (Token::Op(">"), 1),
            ('~', _) => (Token::Op("~"), 1),
            ('&', Some('&')) => (Token::AndAnd, 2),
            ('&', _) => (Token::Amp, 1),
            ('|', Some('|')) => (Token::OrOr, 2),
            ('|', _) => return Err(error(column, "'|' is not an operator; use '||' or 'or'")),
            ('"' | '\'', _) => {
                let (value, len) = string(&chars[i..], column)?;
                (Token::Str(value), len)
            }
            ('-', Some(d)) if d.is_ascii_digit() => number(&chars[i..]),
            (d, _) if d.is_ascii_digit() => number(&chars[i..]),
            (w, _) if w.is_alphabetic() || w == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == '-')
                    .count();
                (Token::Word(chars[i..i + len].iter().collect()), len)
            }
            (other, _) => return Err(error(column, format!("unexpected character '{other}'"))),
        };
        tokens.push((token, column));
        i += len;
    }
    Ok(tokens)
}

/// A quoted string; backslash escapes the quote, a backslash, `n` and `t`.
fn string(chars: &[char], column: usize) -> Result<(String, usize), SyntaxError> {
    let quote = chars[0];
    let mut value = String::new();
    let mut i = 1;
    while i < chars.len() {
        match chars[i] {
            c if c == quote => return Ok((value, i + 1)),
            '\\' => {
                let escaped = chars
                    .get(i + 1)
                    .ok_or_else(|| error(column, "unterminated string"))?;
                value.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    other => *other,
                });
                i += 2;
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(error(
        column,
        format!("unterminated string (no closing {quote})"),
    ))
}

/// A number: optional sign, decimal (with an optional fraction) or `0x` hex, then an optional
/// unit made of letters. The unit is checked by the parser, which knows which are valid.
fn number(chars: &[char]) -> (Token, usize) {
    let mut i = usize::from(chars[0] == '-');
    let hex = chars.get(i) == Some(&'0') && matches!(chars.get(i + 1), Some('x' | 'X'));
    if hex {
        i += 2;
        while chars.get(i).is_some_and(char::is_ascii_hexdigit) {
            i += 1;
        }
    } else {
        while chars
            .get(i)
            .is_some_and(|c| c.is_ascii_digit() || *c == '.' || *c == '_')
        {
            i += 1;
        }
    }
    let text: String = chars[..i].iter().collect();
    let unit_len = chars[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    let unit = (unit_len > 0).then(|| chars[i..i + unit_len].iter().collect());
    (Token::Number { text, unit }, i + unit_len)
}
