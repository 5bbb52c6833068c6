//! The kernel dialect: the check that keeps, of a parsed expression, what trail-capture's meta
//! filter (`-m`) can run in BPF, and says clearly why the rest cannot.
//!
//! BPF compares fields of the `struct sk_buff` a probe sees (paths under `skb.`), as unsigned
//! 64-bit integers or, for `char` arrays, as strings; so it takes `== != < <= > >=`, a mask,
//! non-negative integers and strings, `and`/`or`/`not`, `true`/`false`. A set path (`has PATH` or
//! a bare `PATH`) is a non-zero field: a non-NULL pointer, a set bit. Globs, durations,
//! fractions, booleans as values and `pcap(...)` are refused (pcap filters go to `-f`). Which
//! fields exist, and their types, only the running kernel's BTF knows: resolving them and
//! generating code stay in `capture::kfilter::meta`.

use super::lexer::{error, SyntaxError};
use super::parse::{Condition, Name, Op, Tree, Value};

/// A comparison BPF can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The right-hand side of a kernel comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelValue {
    Number(u64),
    Str(String),
}

/// One comparison of a kernel expression, its field not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// `skb`, then at least one field name.
    pub path: Vec<String>,
    pub mask: Option<u64>,
    pub op: CmpOp,
    pub value: KernelValue,
}

/// An expression the kernel can run.
pub type Expr = Tree<Compare>;

/// Checks a parsed expression against the kernel dialect.
pub fn check(tree: &Tree<Condition>) -> Result<Expr, SyntaxError> {
    tree.try_map(&mut |condition| compare(condition))
}

/// Parses `text` and checks it against the kernel dialect.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    check(&super::parse::parse(text)?)
}

fn compare(condition: &Condition) -> Result<Compare, SyntaxError> {
    match condition {
        Condition::Has(path) => Ok(Compare {
            path: field(path)?,
            mask: None,
            op: CmpOp::Ne,
            value: KernelValue::Number(0),
        }),
        Condition::Compare {
            path,
            mask,
            op,
            value,
            value_column,
        } => {
            let names = field(path)?;
            let shown = Condition::shown(path);
            let op = match op {
                Op::Eq => CmpOp::Eq,
                Op::Ne => CmpOp::Ne,
                Op::Lt => CmpOp::Lt,
                Op::Le => CmpOp::Le,
                Op::Gt => CmpOp::Gt,
                Op::Ge => CmpOp::Ge,
                Op::Glob | Op::NotGlob => {
                    return Err(error(
                        *value_column,
                        format!(
                            "'{}' (glob) does not run in the kernel: compare '{shown}' with ==, \
                             !=, <, <=, > or >=",
                            op.text()
                        ),
                    ))
                }
            };
            let mask = match mask {
                None => None,
                Some(mask) => Some(u64::try_from(*mask).map_err(|_| {
                    error(
                        path[0].1,
                        format!(
                            "the mask of '{shown}' must be an unsigned 64-bit number, not {mask}"
                        ),
                    )
                })?),
            };
            let value = match value {
                Value::Str(s) => KernelValue::Str(s.clone()),
                Value::Int(n) => KernelValue::Number(u64::try_from(*n).map_err(|_| {
                    error(
                        *value_column,
                        format!(
                            "kernel fields compare as unsigned 64-bit numbers; {n} is out of range"
                        ),
                    )
                })?),
                Value::Float(x) => {
                    return Err(error(
                        *value_column,
                        format!("kernel fields compare as integers; {x} has a fraction"),
                    ))
                }
                Value::Bool(b) => {
                    return Err(error(
                        *value_column,
                        format!(
                            "'{b}' does not compare with a kernel field: compare with {}",
                            u8::from(*b)
                        ),
                    ))
                }
                Value::Duration(_) => {
                    return Err(error(
                        *value_column,
                        "durations do not compare with a kernel field: compare with a number",
                    ))
                }
            };
            Ok(Compare {
                path: names,
                mask,
                op,
                value,
            })
        }
        Condition::Pcap { column, .. } => Err(error(
            *column,
            "pcap(...) does not run in the meta filter: give pcap filters with -f",
        )),
    }
}

/// A path the kernel can read: `skb.` and at least one field.
fn field(path: &[Name]) -> Result<Vec<String>, SyntaxError> {
    let names: Vec<String> = path.iter().map(|(name, _)| name.clone()).collect();
    if names[0] != "skb" || names.len() < 2 {
        return Err(error(
            path[0].1,
            format!(
                "meta field {:?} must start with `skb.` (e.g. skb.mark, skb.dev.name)",
                names.join(".")
            ),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> SyntaxError {
        match parse(text) {
            Ok(expr) => panic!("{text}: accepted as {expr:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn runs_what_bpf_can() {
        let expr = parse("skb.mark & 0xff == 16 || !skb.dev && skb.dev.name == 'lo'").unwrap();
        let Tree::Or(left, right) = expr else {
            panic!("or binds loosest")
        };
        assert_eq!(
            *left,
            Tree::Leaf(Compare {
                path: vec!["skb".into(), "mark".into()],
                mask: Some(0xff),
                op: CmpOp::Eq,
                value: KernelValue::Number(16)
            })
        );
        let Tree::And(not_dev, _) = *right else {
            panic!("and binds tighter than or")
        };
        // A bare path is a set path: a non-zero field.
        assert_eq!(
            *not_dev,
            Tree::Not(Box::new(Tree::Leaf(Compare {
                path: vec!["skb".into(), "dev".into()],
                mask: None,
                op: CmpOp::Ne,
                value: KernelValue::Number(0)
            })))
        );
        assert_eq!(parse("has skb.dev").unwrap(), parse("skb.dev").unwrap());
        assert_eq!(
            parse("skb.mark == 18446744073709551615").unwrap(),
            Tree::Leaf(Compare {
                path: vec!["skb".into(), "mark".into()],
                mask: None,
                op: CmpOp::Eq,
                value: KernelValue::Number(u64::MAX)
            })
        );
    }

    #[test]
    fn refuses_what_bpf_cannot_with_a_clear_message() {
        for (text, column, wanted) in [
            (
                "skb.dev.name ~ 've*'",
                16,
                "glob) does not run in the kernel",
            ),
            ("skb.mark == -1", 13, "unsigned 64-bit"),
            ("skb.mark == 18446744073709551616", 13, "out of range"),
            ("skb.mark == 2.5", 13, "fraction"),
            ("skb.mark == true", 13, "compare with 1"),
            ("skb.tstamp > 5ms", 14, "durations"),
            (
                "skb.len > 1 and pcap('tcp')",
                22,
                "give pcap filters with -f",
            ),
            ("drop", 1, "must start with `skb.`"),
            ("skb == 1", 1, "must start with `skb.`"),
            ("skb.mark & -1 == 1", 1, "mask"),
        ] {
            let err = refused(text);
            assert_eq!(err.column, column, "{text}: {err}");
            assert!(err.message.contains(wanted), "{text}: {err}");
        }
    }
}
