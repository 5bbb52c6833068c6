//! The filter language's grammar, and the checks that can be made before reading any event.
//!
//! ```text
//! expr       = and { ("or" | "||") and }
//! and        = unary { ("and" | "&&") unary }
//! unary      = ("not" | "!") unary | primary
//! primary    = "(" expr ")" | "true" | "false" | "has" path | "pcap" "(" string ")"
//!            | path [ "&" integer ] op value
//!            | path                          (a bare section name: "has" it, e.g. `drop`)
//! path       = name { "." name }
//! op         = "==" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "!~"
//! value      = string | number [unit] | "true" | "false"       (unit: ns us ms s)
//! ```
//! Paths into known sections are checked against the event model (typos are errors with
//! suggestions, and values must fit the field's type); paths into sections this build does not
//! know are accepted as they are and evaluated on whatever the stream holds.

use super::lexer::{error, tokenize, SyntaxError, Token};
use super::schema::{self, Kind};

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Const(bool),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// The path leads to a value (a section, or a field that is set).
    Has(Vec<String>),
    Compare {
        target: Target,
        mask: Option<i128>,
        op: Op,
        value: Literal,
    },
    /// A pcap-filter expression, with the column of its string for error messages.
    Pcap {
        filter: String,
        column: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Field(Vec<String>),
    /// `probe`: the probe spec, `tp:skb:kfree_skb`.
    ProbeSpec,
    /// `time`: ns since the section started (see the module doc of `filter`).
    Time,
    /// `tracking.id`: the journey id in text form (`Tracking::id`).
    TrackingId,
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
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
}

/// Shorthand names for fields of `common`.
const COMMON_SHORTHANDS: &[&str] = &["comm", "pid", "tid", "cpu"];
const KEYWORDS: &[&str] = &["and", "or", "not", "has", "pcap", "true", "false"];
const OPERATORS: &str = "==, !=, <, <=, >, >=, ~ or !~";

/// A parsed expression, and remarks worth showing the user (e.g. a section name this build does
/// not know but that looks like a typo of one it does).
#[derive(Debug)]
pub struct Parsed {
    pub expr: Expr,
    pub warnings: Vec<String>,
}

pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: text.chars().count() + 1,
        event: schema::event(),
        warnings: Vec::new(),
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
    Ok(Parsed {
        expr,
        warnings: parser.warnings,
    })
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    /// Column just past the end, for errors about what is missing.
    end: usize,
    event: Kind,
    warnings: Vec<String>,
}

impl Parser {
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

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.and()?;
        while self.is_word("or") || self.peek() == Some(&Token::OrOr) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.unary()?;
        while self.is_word("and") || self.peek() == Some(&Token::AndAnd) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if self.is_word("not") || self.peek() == Some(&Token::Bang) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
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
            Token::Word(w) if w == "true" || w == "false" => Ok(Expr::Const(w == "true")),
            Token::Word(w) if w == "has" => {
                let path = self.path("a section or field name after 'has'")?;
                self.check_path(&path)?;
                Ok(Expr::Has(names(&path)))
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

    /// Column of the token just consumed (or the end), for "expected X after Y" errors.
    fn column_before(&self) -> usize {
        self.tokens.get(self.pos - 1).map_or(self.end, |(_, c)| *c)
    }

    fn pcap(&mut self, column: usize) -> Result<Expr, SyntaxError> {
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
        Ok(Expr::Pcap {
            filter: filter.0,
            column: filter.1,
        })
    }

    /// `name { "." name }`, with each name's column.
    fn path(&mut self, what: &str) -> Result<Vec<(String, usize)>, SyntaxError> {
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

    /// What follows a path: a comparison, or nothing (a bare section name).
    fn condition(&mut self, path: Vec<(String, usize)>) -> Result<Expr, SyntaxError> {
        let shown = names(&path).join(".");
        let comparing = matches!(self.peek(), Some(Token::Op(_) | Token::Amp));
        if !comparing {
            let bare_section = path.len() == 1
                && !COMMON_SHORTHANDS.contains(&path[0].0.as_str())
                && path[0].0 != "time";
            if bare_section {
                self.check_path(&path)?;
                return Ok(Expr::Has(names(&path)));
            }
            return Err(error(
                self.column(),
                format!("expected an operator ({OPERATORS}) after '{shown}'"),
            ));
        }
        let mask = if self.peek() == Some(&Token::Amp) {
            self.pos += 1;
            let column = self.column();
            match self.next() {
                Some((Token::Number { text, unit: None }, _)) => match number(&text) {
                    Some(Literal::Int(mask)) => Some(mask),
                    _ => return Err(error(column, "expected an integer mask after '&'")),
                },
                _ => return Err(error(column, "expected an integer mask after '&'")),
            }
        } else {
            None
        };
        let op_text = match self.next() {
            Some((Token::Op(op), _)) => op,
            _ => {
                return Err(error(
                    self.column_before(),
                    format!("expected an operator ({OPERATORS}) after '{shown} & ...'"),
                ))
            }
        };
        let op = Op::from_token(op_text);
        let value_column = self.column();
        let (value, unit) = match self.next() {
            Some((Token::Str(s), _)) => (Literal::Str(s), None),
            Some((Token::Word(w), _)) if w == "true" || w == "false" => {
                (Literal::Bool(w == "true"), None)
            }
            Some((Token::Number { text, unit }, _)) => {
                let value = number(&text)
                    .ok_or_else(|| error(value_column, format!("'{text}' is not a number")))?;
                match unit {
                    None => (value, None),
                    Some(unit) => (duration(value, &unit, value_column)?, Some(unit)),
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
        if matches!(op, Op::Glob | Op::NotGlob) && !matches!(value, Literal::Str(_)) {
            return Err(error(
                value_column,
                format!("'{op_text}' takes a quoted glob pattern, e.g. \"net:*\""),
            ));
        }
        let target = target(&path);
        let at = path[0].1;
        match &target {
            Target::ProbeSpec | Target::TrackingId => {
                if mask.is_some() || !matches!(value, Literal::Str(_)) {
                    return Err(error(
                        value_column,
                        format!(
                            "'{shown}' is a string: quote the value, e.g. \"tp:skb:kfree_skb\""
                        ),
                    ));
                }
            }
            Target::Time => {
                if mask.is_some() || unit.is_none() || matches!(op, Op::Glob | Op::NotGlob) {
                    return Err(error(
                        at,
                        "'time' compares with a duration with its unit: 12.5s, 300ms, 40us or 100ns",
                    ));
                }
            }
            Target::Field(resolved) => {
                // Shorthands are checked as the field they stand for.
                let path: Vec<(String, usize)> = if resolved.len() == path.len() {
                    path
                } else {
                    resolved.iter().map(|name| (name.clone(), at)).collect()
                };
                if let Some(kind) = self.check_path(&path)? {
                    check_type(kind, &shown, mask.is_some(), op, &value, at, value_column)?;
                }
            }
        }
        Ok(Expr::Compare {
            target,
            mask,
            op,
            value,
        })
    }

    /// Checks a path against the event model: `Ok(Some(kind))` for a known field, `Ok(None)`
    /// for a path into a section this build does not know (with a warning if it looks like a
    /// typo), an error for a misspelt field of a known section.
    fn check_path(&mut self, path: &[(String, usize)]) -> Result<Option<&Kind>, SyntaxError> {
        let Kind::Struct(sections) = &self.event else {
            return Ok(None);
        };
        let (section, column) = &path[0];
        if [COMMON_SHORTHANDS, &["time"]]
            .concat()
            .contains(&section.as_str())
            && path.len() == 1
        {
            return Ok(None);
        }
        if section == "tracking" && path.len() == 2 && path[1].0 == "id" {
            return Ok(None);
        }
        let Some(mut kind) = sections.get(section) else {
            let close = schema::close_matches(section, sections.keys().map(String::as_str));
            if let Some(best) = close.first() {
                self.warnings.push(format!(
                    "expression column {column}: '{section}' is not a section this build knows \
                     (it matches only events that carry such a section); did you mean '{best}'?"
                ));
            }
            return Ok(None);
        };
        let mut walked = section.clone();
        for (name, column) in &path[1..] {
            while let Kind::Array(item) = kind {
                kind = item;
            }
            let Kind::Struct(fields) = kind else {
                return Err(error(
                    *column,
                    format!("'{walked}' is {} and has no fields", kind.describe()),
                ));
            };
            let Some(field) = fields.get(name) else {
                let close = schema::close_matches(name, fields.keys().map(String::as_str));
                let all: Vec<&str> = fields.keys().map(String::as_str).collect();
                let hint = match close.as_slice() {
                    [] => format!("its fields are {}", all.join(", ")),
                    close => format!("did you mean {}?", quoted(close)),
                };
                return Err(error(
                    *column,
                    format!("'{walked}' has no field '{name}'; {hint}"),
                ));
            };
            kind = field;
            walked = format!("{walked}.{name}");
        }
        Ok(Some(kind))
    }
}

fn target(path: &[(String, usize)]) -> Target {
    let names = names(path);
    match names
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["probe"] => Target::ProbeSpec,
        ["time"] => Target::Time,
        ["tracking", "id"] => Target::TrackingId,
        [short] if COMMON_SHORTHANDS.contains(short) => {
            Target::Field(vec!["common".into(), short.to_string()])
        }
        _ => Target::Field(names),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn names(path: &[(String, usize)]) -> Vec<String> {
    path.iter().map(|(name, _)| name.clone()).collect()
}

/// Whether a literal can be compared with a field of `kind`; errors point at the value.
fn check_type(
    kind: &Kind,
    shown: &str,
    masked: bool,
    op: Op,
    value: &Literal,
    field_column: usize,
    value_column: usize,
) -> Result<(), SyntaxError> {
    let mut kind = kind;
    while let Kind::Array(item) = kind {
        kind = item;
    }
    if let Kind::Struct(fields) = kind {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        return Err(error(
            field_column,
            format!(
                "'{shown}' is a structure; compare one of its fields: {}",
                names.join(", ")
            ),
        ));
    }
    if masked && !matches!(kind, Kind::Integer | Kind::Other) {
        return Err(error(
            field_column,
            format!(
                "'{shown}' is {}; '&' needs an integer field",
                kind.describe()
            ),
        ));
    }
    if matches!(op, Op::Glob | Op::NotGlob) {
        return Ok(());
    }
    let fits = matches!(
        (kind, value),
        (Kind::Other, _)
            | (Kind::String | Kind::Bytes, Literal::Str(_))
            | (
                Kind::Integer | Kind::Float,
                Literal::Int(_) | Literal::Float(_)
            )
            | (Kind::Bool, Literal::Bool(_))
    );
    if fits {
        return Ok(());
    }
    let hint = match kind {
        Kind::String => "quote the value",
        Kind::Bytes => "compare with lowercase hex in quotes",
        Kind::Bool => "compare with true or false",
        _ => "compare with a number",
    };
    Err(error(
        value_column,
        format!("'{shown}' is {}: {hint}", kind.describe()),
    ))
}

/// A number as written: decimal, `0x` hex, with `_` separators; a fraction makes a float.
fn number(text: &str) -> Option<Literal> {
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
            .map(|v| Literal::Int(sign * v));
    }
    if digits.contains('.') {
        return clean
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Literal::Float);
    }
    digits.parse::<i128>().ok().map(|v| Literal::Int(sign * v))
}

/// A number with a time unit, in ns.
fn duration(value: Literal, unit: &str, column: usize) -> Result<Literal, SyntaxError> {
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
    Ok(Literal::Int(match value {
        Literal::Int(v) => v * scale,
        Literal::Float(f) => (f * scale as f64).round() as i128,
        _ => unreachable!("durations are built from numbers"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &str) -> Target {
        Target::Field(path.split('.').map(String::from).collect())
    }

    fn cmp(target: Target, op: Op, value: Literal) -> Expr {
        Expr::Compare {
            target,
            mask: None,
            op,
            value,
        }
    }

    fn ok(text: &str) -> Expr {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).expr
    }

    fn err(text: &str) -> SyntaxError {
        match parse(text) {
            Ok(parsed) => panic!("{text}: parsed as {:?}", parsed.expr),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_every_example_of_the_issue() {
        assert_eq!(
            ok(r#"probe == "tp:skb:kfree_skb""#),
            cmp(
                Target::ProbeSpec,
                Op::Eq,
                Literal::Str("tp:skb:kfree_skb".into())
            )
        );
        assert_eq!(
            ok(r#"probe ~ "net:*""#),
            cmp(Target::ProbeSpec, Op::Glob, Literal::Str("net:*".into()))
        );
        assert_eq!(
            ok(r#"drop.reason == "NETFILTER_DROP""#),
            cmp(
                field("drop.reason"),
                Op::Eq,
                Literal::Str("NETFILTER_DROP".into())
            )
        );
        assert_eq!(
            ok("netns.inum == 4026532000"),
            cmp(field("netns.inum"), Op::Eq, Literal::Int(4026532000))
        );
        assert_eq!(
            ok("pid == 42"),
            cmp(field("common.pid"), Op::Eq, Literal::Int(42))
        );
        assert_eq!(
            ok("comm == 'curl'"),
            cmp(field("common.comm"), Op::Eq, Literal::Str("curl".into()))
        );
        assert_eq!(
            ok("skb.mark & 0xff == 1"),
            Expr::Compare {
                target: field("skb.mark"),
                mask: Some(255),
                op: Op::Eq,
                value: Literal::Int(1)
            }
        );
        assert_eq!(
            ok("time >= 12.5s"),
            cmp(Target::Time, Op::Ge, Literal::Int(12_500_000_000))
        );
        assert_eq!(
            ok("time < 3us"),
            cmp(Target::Time, Op::Lt, Literal::Int(3_000))
        );
        assert_eq!(
            ok(r#"tracking.id == "1-2""#),
            cmp(Target::TrackingId, Op::Eq, Literal::Str("1-2".into()))
        );
        assert_eq!(ok("has drop"), Expr::Has(vec!["drop".into()]));
        assert_eq!(ok("drop"), Expr::Has(vec!["drop".into()]));
        assert_eq!(
            ok(r#"pcap("tcp port 443")"#),
            Expr::Pcap {
                filter: "tcp port 443".into(),
                column: 6
            }
        );
    }

    #[test]
    fn precedence_and_negation() {
        // `or` binds looser than `and`; `not` binds tightest.
        let has = |s: &str| Expr::Has(vec![s.into()]);
        assert_eq!(
            ok("drop or ct and not dev"),
            Expr::Or(
                Box::new(has("drop")),
                Box::new(Expr::And(
                    Box::new(has("ct")),
                    Box::new(Expr::Not(Box::new(has("dev"))))
                ))
            )
        );
        assert_eq!(
            ok("(drop || ct) && !dev"),
            Expr::And(
                Box::new(Expr::Or(Box::new(has("drop")), Box::new(has("ct")))),
                Box::new(Expr::Not(Box::new(has("dev"))))
            )
        );
    }

    #[test]
    fn unknown_sections_are_accepted_as_written() {
        assert_eq!(
            ok(r#"gre.key.low == 5"#),
            cmp(field("gre.key.low"), Op::Eq, Literal::Int(5))
        );
        let parsed = parse("dorp.reason == 'x'").unwrap();
        assert!(
            parsed.warnings[0].contains("did you mean 'drop'"),
            "{:?}",
            parsed.warnings
        );
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = err("drop.reason == ");
        assert_eq!(
            (e.column, e.message.as_str()),
            (16, "expected a value after '=='")
        );
        assert_eq!(
            e.to_string(),
            "expression column 16: expected a value after '=='"
        );
        let e = err("drop.reason == 'x' and dev.nmae == 'veth0'");
        assert_eq!(e.column, 28);
        assert!(e.message.contains("did you mean 'name'"), "{}", e.message);
        let e = err("pid = 4");
        assert_eq!(e.column, 5);
        let e = err("(drop or ct");
        assert_eq!(e.column, 12);
        assert!(e.message.contains("column 1"), "{}", e.message);
        let e = err("drop)");
        assert_eq!((e.column, e.message.as_str()), (5, "unbalanced ')'"));
        let e = err("time > 5");
        assert_eq!(e.column, 1);
        let e = err("pid == 'x'");
        assert_eq!(e.column, 8);
        let e = err("dev.name == 5");
        assert_eq!(e.column, 13);
        let e = err("ct.orig == 'x'");
        assert!(e.message.contains("structure"), "{}", e.message);
        let e = err("comm");
        assert_eq!(e.column, 5);
        let e = err("drop.reason == NETFILTER_DROP");
        assert!(e.message.contains("quote"), "{}", e.message);
        let e = err("time > 5parsecs");
        assert_eq!(e.column, 8);
        let e = err("pcap(tcp)");
        assert_eq!(e.column, 6);
        let e = err("skb.mark & == 1");
        assert_eq!(e.column, 12);
        let e = err("probe ~ 5");
        assert_eq!(e.column, 9);
        let e = err("drop and");
        assert_eq!(e.column, 9);
        let e = err("\"unterminated");
        assert_eq!(e.column, 1);
        let e = err("dev.name == 'x' drop");
        assert_eq!(e.column, 17);
        assert_eq!(err("").column, 1);
    }
}
