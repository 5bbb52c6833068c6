//! The filter dialect of the expression language (`crate::expr`): each parsed condition
//! checked against the event model and given its meaning for `trail-filter`, before any event
//! is read.
//!
//! Paths into known sections are checked (typos are errors with suggestions, and values must
//! fit the field's type); paths into sections this build does not know are accepted as they are
//! and evaluated on whatever the stream holds. Shorthands: `probe` (the probe spec), `time`
//! (since the section started), `tracking.id`, and `comm`, `pid`, `tid`, `cpu` (of `common`).
//! A set path (`has PATH`, or a bare `PATH`) leads to a value: a section, or a field that is set.

use super::schema::{self, Kind};
use crate::expr::lexer::{error, SyntaxError};
use crate::expr::suggest::close_matches;
use crate::expr::{Condition, Name, Tree, Value};

pub use crate::expr::Op;

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

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
}

/// Shorthand names for fields of `common`.
const COMMON_SHORTHANDS: &[&str] = &["comm", "pid", "tid", "cpu"];

/// A parsed expression, and remarks worth showing the user (e.g. a section name this build does
/// not know but that looks like a typo of one it does).
#[derive(Debug)]
pub struct Parsed {
    pub expr: Expr,
    pub warnings: Vec<String>,
}

pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut checker = Checker {
        event: schema::event(),
        warnings: Vec::new(),
    };
    let tree = crate::expr::parse_with(text, &mut |condition| checker.condition(condition))?;
    Ok(Parsed {
        expr: fold(tree),
        warnings: checker.warnings,
    })
}

fn fold(tree: Tree<Expr>) -> Expr {
    match tree {
        Tree::Const(b) => Expr::Const(b),
        Tree::Not(a) => Expr::Not(Box::new(fold(*a))),
        Tree::And(a, b) => Expr::And(Box::new(fold(*a)), Box::new(fold(*b))),
        Tree::Or(a, b) => Expr::Or(Box::new(fold(*a)), Box::new(fold(*b))),
        Tree::Leaf(expr) => expr,
    }
}

struct Checker {
    event: Kind,
    warnings: Vec<String>,
}

impl Checker {
    fn condition(&mut self, condition: Condition) -> Result<Expr, SyntaxError> {
        match condition {
            Condition::Has(mut path) => {
                if path.len() == 1 && COMMON_SHORTHANDS.contains(&path[0].0.as_str()) {
                    path.insert(0, ("common".into(), path[0].1));
                }
                self.check_path(&path)?;
                Ok(Expr::Has(names(&path)))
            }
            Condition::Pcap { filter, column } => Ok(Expr::Pcap { filter, column }),
            Condition::Compare {
                path,
                mask,
                op,
                value,
                value_column,
            } => self.compare(path, mask, op, value, value_column),
        }
    }

    fn compare(
        &mut self,
        path: Vec<Name>,
        mask: Option<i128>,
        op: Op,
        value: Value,
        value_column: usize,
    ) -> Result<Expr, SyntaxError> {
        let shown = Condition::shown(&path);
        let (value, duration) = match value {
            Value::Int(v) => (Literal::Int(v), false),
            Value::Float(v) => (Literal::Float(v), false),
            Value::Str(v) => (Literal::Str(v), false),
            Value::Bool(v) => (Literal::Bool(v), false),
            Value::Duration(ns) => (Literal::Int(ns), true),
        };
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
                if mask.is_some() || !duration || matches!(op, Op::Glob | Op::NotGlob) {
                    return Err(error(
                        at,
                        "'time' compares with a duration with its unit: 12.5s, 300ms, 40us or 100ns",
                    ));
                }
            }
            Target::Field(resolved) => {
                // Shorthands are checked as the field they stand for.
                let path: Vec<Name> = if resolved.len() == path.len() {
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
    fn check_path(&mut self, path: &[Name]) -> Result<Option<&Kind>, SyntaxError> {
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
            let close = close_matches(section, sections.keys().map(String::as_str));
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
                let close = close_matches(name, fields.keys().map(String::as_str));
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

fn target(path: &[Name]) -> Target {
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

fn names(path: &[Name]) -> Vec<String> {
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
        assert_eq!(
            ok("has comm"),
            Expr::Has(vec!["common".into(), "comm".into()])
        );
        assert_eq!(ok("drop"), Expr::Has(vec!["drop".into()]));
        // A bare path means `has` it, whatever its length (as in trail-capture -m).
        assert_eq!(ok("comm"), ok("has comm"));
        assert_eq!(
            ok("skb.vlan_tci"),
            Expr::Has(vec!["skb".into(), "vlan_tci".into()])
        );
        assert_eq!(
            ok("skb.mark & 0xff"),
            Expr::Compare {
                target: field("skb.mark"),
                mask: Some(255),
                op: Op::Ne,
                value: Literal::Int(0)
            }
        );
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
        let e = err("dev.name 'x'");
        assert_eq!(e.column, 10);
        assert!(e.message.contains("expected an operator"), "{}", e.message);
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
