//! The one expression language (lib/expr) as both tools see it: the same text parses to the same
//! tree for `trail-filter` and for `trail-capture -m`, a syntax error reads the same in both,
//! and the kernel dialect refuses what BPF cannot run with a clear message.

use libbpf_rs::btf::Btf;
use trail::capture::kfilter::meta;
use trail::expr::kernel::{self, Compare};
use trail::expr::{self, Condition, Tree};
use trail::filter::{Expr as FilterExpr, Target};

use crate::common::run;

/// The boolean skeleton of a tree with the path of each leaf: what both tools must agree on.
fn shape_of_tree(tree: &Tree<Condition>) -> String {
    let leaf = |c: &Condition| match c {
        Condition::Has(path) | Condition::Compare { path, .. } => Condition::shown(path),
        Condition::Pcap { filter, .. } => format!("pcap {filter}"),
    };
    shape(tree, &leaf)
}

fn shape<L>(tree: &Tree<L>, leaf: &dyn Fn(&L) -> String) -> String {
    match tree {
        Tree::Const(b) => b.to_string(),
        Tree::Not(a) => format!("(not {})", shape(a, leaf)),
        Tree::And(a, b) => format!("(and {} {})", shape(a, leaf), shape(b, leaf)),
        Tree::Or(a, b) => format!("(or {} {})", shape(a, leaf), shape(b, leaf)),
        Tree::Leaf(l) => leaf(l),
    }
}

fn shape_of_filter(expr: &FilterExpr) -> String {
    match expr {
        FilterExpr::Const(b) => b.to_string(),
        FilterExpr::Not(a) => format!("(not {})", shape_of_filter(a)),
        FilterExpr::And(a, b) => format!("(and {} {})", shape_of_filter(a), shape_of_filter(b)),
        FilterExpr::Or(a, b) => format!("(or {} {})", shape_of_filter(a), shape_of_filter(b)),
        FilterExpr::Has(path)
        | FilterExpr::Compare {
            target: Target::Field(path),
            ..
        } => path.join("."),
        other => panic!("not a field: {other:?}"),
    }
}

fn shape_of_kernel(expr: &kernel::Expr) -> String {
    shape(expr, &|c: &Compare| c.path.join("."))
}

/// Expressions both tools accept, in the spellings of both former dialects.
const BOTH: &[&str] = &[
    "skb.mark == 1",
    "skb.mark & 0xff == 0x10 || !skb.len && (skb.priority != 7)",
    "skb.mark & 255 == 16 or not skb.len and (skb.priority != 7)",
    "skb.len > 1000 && !(skb.mark == 4026531840)",
    "has skb.mark and skb.mark & 3",
    "true and skb.len >= 64",
];

#[test]
fn same_text_same_tree_in_both_tools() {
    for text in BOTH {
        let tree = expr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let filter = trail::filter::parse(text).unwrap_or_else(|e| panic!("filter {text}: {e}"));
        let kernel = meta::parse(text).unwrap_or_else(|e| panic!("-m {text}: {e}"));
        assert_eq!(kernel, kernel::check(&tree).unwrap(), "{text}");
        let want = shape_of_tree(&tree);
        assert_eq!(shape_of_filter(&filter.expr), want, "trail-filter: {text}");
        assert_eq!(shape_of_kernel(&kernel), want, "trail-capture -m: {text}");
    }
    // The two spellings of one expression are one tree.
    assert_eq!(
        expr::parse(BOTH[1]).unwrap().to_string(),
        expr::parse(BOTH[2]).unwrap().to_string()
    );
    assert_eq!(
        expr::parse("skb.dev.name == 'lo'").unwrap().to_string(),
        expr::parse("skb.dev.name == \"lo\"").unwrap().to_string()
    );
}

#[test]
fn syntax_errors_read_the_same_in_both_tools() {
    let btf = Btf::from_vmlinux().expect("kernel BTF");
    for text in [
        "skb.mark = 1",
        "skb.mark == ",
        "(skb.mark == 1",
        "skb.mark == 1)",
        "skb.dev.name == \"veth0",
        "skb.mark $ 1",
        "skb.mark == 1 skb.len",
    ] {
        let message = expr::parse(text).unwrap_err().to_string();
        assert!(message.starts_with("expression column "), "{message}");
        let output = run("trail-filter", &[text], b"");
        let filter = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            filter.trim_end(),
            format!("trail-filter: error: {message}"),
            "{text}"
        );
        let capture = meta::build(&btf, text).unwrap_err().to_string();
        assert_eq!(
            capture,
            format!("meta filter {text:?}: {message}"),
            "{text}"
        );
    }
}

#[test]
fn kernel_dialect_refuses_what_bpf_cannot_run() {
    for (text, wanted) in [
        ("skb.mark ~ \"1*\"", "'~' (glob) does not run in the kernel"),
        (
            "skb.mark == -1",
            "unsigned 64-bit numbers; -1 is out of range",
        ),
        ("skb.mark == 1.5", "integers; 1.5 has a fraction"),
        (
            "skb.len > 5ms",
            "durations do not compare with a kernel field",
        ),
        ("pcap(\"tcp\")", "give pcap filters with -f"),
        (
            "drop.reason == \"NETFILTER_DROP\"",
            "must start with `skb.`",
        ),
    ] {
        // trail-filter takes every one of these (its own dialect).
        trail::filter::parse(text).unwrap_or_else(|e| panic!("filter {text}: {e}"));
        let err = meta::parse(text).unwrap_err().to_string();
        assert!(
            err.starts_with("expression column ") && err.contains(wanted),
            "{text}: {err}"
        );
    }
}
