//! The grammar of the expression language and its syntax tree, shared by `trail-filter` and
//! `trail-capture -m`.
//!
//! ```text
//! expr       = and { ("or" | "||") and }
//! and        = unary { ("and" | "&&") unary }
//! unary      = ("not" | "!") unary | primary
//! primary    = "(" expr ")" | "true" | "false" | "has" path | "pcap" "(" string ")"
//!            | path [ "&" integer ] op value
//!            | path "&" integer                (the masked bits are set: "& MASK != 0")
//!            | path                            (the path is set: the same as "has" path)
//! path       = name { "." name }
//! op         = "==" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "!~"
//! value      = string | number [unit] | "true" | "false"       (unit: ns us ms s)
//! ```
//! Strings take either quote, with `\` escaping the quote, a backslash, `n` and `t`. Numbers are
//! decimal (with `_` separators and an optional fraction), or `0x` hex, optionally negative.
//!
//! The parser knows no fields: each condition (a [`Condition`]: `has`/bare path, comparison or
//! `pcap(...)`) is handed to the caller's check as soon as it is parsed ([`parse_with`]), so
//! every error, of syntax or of meaning, is the leftmost one and names its column. The tree
//! ([`Tree`]) is the same for both tools; what differs is the check: `trail-filter` resolves
//! paths against the event model (`filter::parse`), the kernel dialect ([`super::kernel`])
//! keeps what BPF can run.

use std::fmt;

use super::lexer::{error, tokenize, SyntaxError, Token};

/// The boolean structure of an expression, with the tool's own conditions at the leaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Tree<L> {
    Const(bool),
    Not(Box<Tree<L>>),
    And(Box<Tree<L>>, Box<Tree<L>>),
    Or(Box<Tree<L>>, Box<Tree<L>>),
    Leaf(L),
}

impl<L> Tree<L> {
    /// The same structure with every leaf turned by `f` (the first error stops it).
    pub fn try_map<M, E>(&self, f: &mut impl FnMut(&L) -> Result<M, E>) -> Result<Tree<M>, E> {
        Ok(match self {
            Tree::Const(b) => Tree::Const(*b),
            Tree::Not(a) => Tree::Not(Box::new(a.try_map(f)?)),
            Tree::And(a, b) => Tree::And(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
            Tree::Or(a, b) => Tree::Or(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
            Tree::Leaf(leaf) => Tree::Leaf(f(leaf)?),
        })
    }
}

/// A name of a path and the column where it starts.
pub type Name = (String, usize);

/// One condition as written, before any tool gives it a meaning.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `has PATH`, or a bare `PATH`: the path is set.
    Has(Vec<Name>),
    /// `PATH [& MASK] OP VALUE`; `PATH & MASK` alone is `PATH & MASK != 0`.
    Compare {
        path: Vec<Name>,
        mask: Option<i128>,
        op: Op,
        value: Value,
        /// Column of the value (of the mask for `PATH & MASK` alone), for errors about it.
        value_column: usize,
    },
    /// `pcap("...")`, with the column of its string.
    Pcap { filter: String, column: usize },
}

impl Condition {
    /// The path as written, `skb.dev.name`, for messages.
    pub fn shown(path: &[Name]) -> String {
        path.iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Glob,
    NotGlob,
}

impl Op {
    fn from_token(op: &str) -> Op {
        match op {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "~" => Op::Glob,
            _ => Op::NotGlob,
        }
    }

    /// The operator as written.
    pub fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Glob => "~",
            Op::NotGlob => "!~",
        }
    }
}

/// A value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    /// A number with a time unit, in ns.
    Duration(i128),
}

impl fmt::Display for Tree<Condition> {
    /// A canonical form without columns or surface syntax (`and` and `&&` print the same), for
    /// tests and diagnostics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tree::Const(b) => write!(f, "{b}"),
            Tree::Not(a) => write!(f, "(not {a})"),
            Tree::And(a, b) => write!(f, "(and {a} {b})"),
            Tree::Or(a, b) => write!(f, "(or {a} {b})"),
            Tree::Leaf(Condition::Has(path)) => write!(f, "(has {})", Condition::shown(path)),
            Tree::Leaf(Condition::Compare {
                path,
                mask,
                op,
                value,
                ..
            }) => {
                write!(f, "({} {}", op.text(), Condition::shown(path))?;
                if let Some(mask) = mask {
                    write!(f, " & {mask}")?;
                }
                write!(f, " {value:?})")
            }
            Tree::Leaf(Condition::Pcap { filter, .. }) => write!(f, "(pcap {filter:?})"),
        }
    }
}

const KEYWORDS: &[&str] = &["and", "or", "not", "has", "pcap", "true", "false"];
const OPERATORS: &str = "==, !=, <, <=, >, >=, ~ or !~";

/// Parses `text` into its syntax tree, every condition as written.
pub fn parse(text: &str) -> Result<Tree<Condition>, SyntaxError> {
    parse_with(text, &mut |condition| Ok(condition))
}

/// Parses `text`, turning each condition into the caller's leaf by `check` as soon as it is
/// parsed, so that the first error reported is the leftmost one.
pub fn parse_with<L>(
    text: &str,
    check: &mut dyn FnMut(Condition) -> Result<L, SyntaxError>,
) -> Result<Tree<L>, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: text.chars().count() + 1,
        check,
    };
    if parser.tokens.is_empty() {
        return Err(error(1, "empty expression"));
    }
    let expr = parser.or()?;
    if let Some((token, column)) = parser.tokens.get(parser.pos) {
        let message = match token {
            Token::RParen => "unbalanced ')'".to_string(),
            other => format!("expected 'and', 'or' or the end of the expression, found {other}"),
        };
        return Err(error(*column, message));
    }
    Ok(expr)
}

struct Parser<'c, L> {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    /// Column just past the end, for errors about what is missing.
    end: usize,
    check: &'c mut dyn FnMut(Condition) -> Result<L, SyntaxError>,
}

impl<L> Parser<'_, L> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(_, c)| *c)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn next(&mut self) -> Option<(Token, usize)> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    /// Column of the token just consumed (or the end), for "expected X after Y" errors.
    fn column_before(&self) -> usize {
        self.tokens.get(self.pos - 1).map_or(self.end, |(_, c)| *c)
    }

    fn leaf(&mut self, condition: Condition) -> Result<Tree<L>, SyntaxError> {
        (self.check)(condition).map(Tree::Leaf)
    }

    fn or(&mut self) -> Result<Tree<L>, SyntaxError> {
        let mut left = self.and()?;
        while self.is_word("or") || self.peek() == Some(&Token::OrOr) {
            self.pos += 1;
            let right = self.and()?;
            left = Tree::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Tree<L>, SyntaxError> {
        let mut left = self.unary()?;
        while self.is_word("and") || self.peek() == Some(&Token::AndAnd) {
            self.pos += 1;
            let right = self.unary()?;
            left = Tree::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Tree<L>, SyntaxError> {
        if self.is_word("not") || self.peek() == Some(&Token::Bang) {
            self.pos += 1;
            return Ok(Tree::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Tree<L>, SyntaxError> {
        let column = self.column();
        let Some((token, _)) = self.next() else {
            return Err(error(
                column,
                "expected a condition at the end of the expression",
            ));
        };
        match token {
            Token::LParen => {
                let inner = self.or()?;
                match self.next() {
                    Some((Token::RParen, _)) => Ok(inner),
                    _ => Err(error(
                        self.column_before(),
                        format!("expected ')' to close the '(' at column {column}"),
                    )),
                }
            }
            Token::Word(w) if w == "true" || w == "false" => Ok(Tree::Const(w == "true")),
            Token::Word(w) if w == "has" => {
                let path = self.path("a section or field name after 'has'")?;
                self.leaf(Condition::Has(path))
            }
            Token::Word(w) if w == "pcap" => self.pcap(column),
            Token::Word(w) if KEYWORDS.contains(&w.as_str()) => Err(error(
                column,
                format!("expected a condition, found the keyword '{w}'"),
            )),
            Token::Word(_) => {
                self.pos -= 1;
                let path = self.path("a field name")?;
                self.condition(path)
            }
            other => Err(error(
                column,
                format!("expected a condition (a field, 'has', 'pcap(...)', 'not' or '('), found {other}"),
            )),
        }
    }

    fn pcap(&mut self, column: usize) -> Result<Tree<L>, SyntaxError> {
        if !matches!(self.next(), Some((Token::LParen, _))) {
            return Err(error(self.column_before(), "expected '(' after 'pcap'"));
        }
        let filter = match self.next() {
            Some((Token::Str(s), c)) => (s, c),
            _ => {
                return Err(error(
                    self.column_before(),
                    "expected a quoted pcap-filter expression: pcap(\"tcp port 443\")",
                ))
            }
        };
        if !matches!(self.next(), Some((Token::RParen, _))) {
            return Err(error(
                self.column_before(),
                format!("expected ')' to close the 'pcap(' at column {column}"),
            ));
        }
        self.leaf(Condition::Pcap {
            filter: filter.0,
            column: filter.1,
        })
    }

    /// `name { "." name }`, with each name's column.
    fn path(&mut self, what: &str) -> Result<Vec<Name>, SyntaxError> {
        let mut path = Vec::new();
        loop {
            match self.next() {
                Some((Token::Word(w), c)) => path.push((w, c)),
                Some((other, c)) => {
                    return Err(error(c, format!("expected {what}, found {other}")))
                }
                None => {
                    return Err(error(
                        self.end,
                        format!("expected {what} at the end of the expression"),
                    ))
                }
            }
            if self.peek() != Some(&Token::Dot) {
                return Ok(path);
            }
            self.pos += 1;
        }
    }

    /// Whether the next token is a value, i.e. an operator was left out (`dev.name "x"`).
    fn value_follows(&self) -> bool {
        matches!(self.peek(), Some(Token::Str(_) | Token::Number { .. }))
    }

    /// What follows a path: a comparison, a mask alone, or nothing (the path is set).
    fn condition(&mut self, path: Vec<Name>) -> Result<Tree<L>, SyntaxError> {
        let shown = Condition::shown(&path);
        let comparing = matches!(self.peek(), Some(Token::Op(_) | Token::Amp));
        if !comparing {
            if self.value_follows() {
                return Err(error(
                    self.column(),
                    format!("expected an operator ({OPERATORS}) after '{shown}'"),
                ));
            }
            return self.leaf(Condition::Has(path));
        }
        let mask = if self.peek() == Some(&Token::Amp) {
            self.pos += 1;
            let column = self.column();
            match self.next() {
                Some((Token::Number { text, unit: None }, _)) => match number(&text) {
                    Some(Value::Int(mask)) => Some((mask, column)),
                    _ => return Err(error(column, "expected an integer mask after '&'")),
                },
                _ => return Err(error(column, "expected an integer mask after '&'")),
            }
        } else {
            None
        };
        let op_text = match self.peek() {
            Some(Token::Op(op)) => *op,
            _ if self.value_follows() => {
                return Err(error(
                    self.column(),
                    format!("expected an operator ({OPERATORS}) after '{shown} & ...'"),
                ))
            }
            _ => {
                // `PATH & MASK` alone: the masked bits are set.
                let (mask, column) = mask.expect("a comparison without operator has a mask");
                return self.leaf(Condition::Compare {
                    path,
                    mask: Some(mask),
                    op: Op::Ne,
                    value: Value::Int(0),
                    value_column: column,
                });
            }
        };
        self.pos += 1;
        let op = Op::from_token(op_text);
        let value_column = self.column();
        let value = match self.next() {
            Some((Token::Str(s), _)) => Value::Str(s),
            Some((Token::Word(w), _)) if w == "true" || w == "false" => Value::Bool(w == "true"),
            Some((Token::Number { text, unit }, _)) => {
                let value = number(&text)
                    .ok_or_else(|| error(value_column, format!("'{text}' is not a number")))?;
                match unit {
                    None => value,
                    Some(unit) => duration(value, &unit, value_column)?,
                }
            }
            Some((Token::Word(w), _)) => {
                return Err(error(
                    value_column,
                    format!("expected a value after '{op_text}'; quote strings: \"{w}\""),
                ))
            }
            _ => {
                return Err(error(
                    value_column,
                    format!("expected a value after '{op_text}'"),
                ))
            }
        };
        if matches!(op, Op::Glob | Op::NotGlob) && !matches!(value, Value::Str(_)) {
            return Err(error(
                value_column,
                format!("'{op_text}' takes a quoted glob pattern, e.g. \"net:*\""),
            ));
        }
        self.leaf(Condition::Compare {
            path,
            mask: mask.map(|(mask, _)| mask),
            op,
            value,
            value_column,
        })
    }
}

/// A number as written: decimal, `0x` hex, with `_` separators; a fraction makes a float.
fn number(text: &str) -> Option<Value> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.as_str()),
    };
    let sign = if negative { -1 } else { 1 };
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        return i128::from_str_radix(hex, 16)
            .ok()
            .map(|v| Value::Int(sign * v));
    }
    if digits.contains('.') {
        return clean
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float);
    }
    digits.parse::<i128>().ok().map(|v| Value::Int(sign * v))
}

/// A number with a time unit, in ns.
fn duration(value: Value, unit: &str, column: usize) -> Result<Value, SyntaxError> {
    let scale: i128 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        other => {
            return Err(error(
                column,
                format!("unknown unit '{other}' (time units: ns, us, ms, s)"),
            ))
        }
    };
    Ok(Value::Duration(match value {
        Value::Int(v) => v * scale,
        Value::Float(f) => (f * scale as f64).round() as i128,
        _ => unreachable!("durations are built from numbers"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> String {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    #[test]
    fn both_spellings_give_one_tree() {
        for (a, b) in [
            (
                "skb.mark & 0xff == 16 or not skb.len > 1000 and skb.dev.name == 'lo'",
                "skb.mark & 0xff == 0x10 || !(skb.len > 1000) && skb.dev.name == \"lo\"",
            ),
            ("not drop and has ct", "!drop && ct"),
            ("skb.mark & 3", "skb.mark & 3 != 0"),
        ] {
            assert_eq!(tree(a), tree(b), "{a} / {b}");
        }
        assert_eq!(
            tree("drop or ct and not dev"),
            "(or (has drop) (and (has ct) (not (has dev))))"
        );
    }

    #[test]
    fn values_and_units() {
        assert_eq!(tree("time >= 12.5s"), "(>= time Duration(12500000000))");
        assert_eq!(tree("x == -3"), "(== x Int(-3))");
        assert_eq!(tree("x == 1_000"), "(== x Int(1000))");
        assert_eq!(tree("x == 2.5"), "(== x Float(2.5))");
        assert_eq!(tree("x != true"), "(!= x Bool(true))");
        assert_eq!(tree("x ~ 'a\\'b'"), "(~ x Str(\"a'b\"))");
    }

    #[test]
    fn errors_point_at_the_column() {
        let err = |text: &str| parse(text).unwrap_err();
        assert_eq!(err("x == ").column, 6);
        assert_eq!(err("dev.name 'x'").column, 10);
        assert_eq!(err("skb.mark & 1 2").column, 14);
        assert_eq!(err("x == 5parsecs").column, 6);
        assert_eq!(err("a b").column, 3);
        assert_eq!(err("").message, "empty expression");
    }

    #[test]
    fn the_check_sees_conditions_left_to_right() {
        let mut seen = Vec::new();
        let result = parse_with("a == 1 and (b or c == 'x'", &mut |c| {
            seen.push(Tree::Leaf(c.clone()).to_string());
            Ok(())
        });
        assert!(result.is_err());
        assert_eq!(seen, ["(== a Int(1))", "(has b)", "(== c Str(\"x\"))"]);
    }
}
