//! The expression language of trail, in one home: one lexer, one grammar, one syntax tree and
//! one did-you-mean for `trail-filter EXPR` and `trail-capture -m EXPR`, plus the two pattern
//! languages that sit beside it: libpcap compilation ([`pcap`], for `pcap("...")` and `-f`) and
//! the glob of every probe pattern ([`glob`]).
//!
//! Layering: this module depends only on [`crate::model`] (link-type values) and on libpcap. The
//! two tools that speak the language, [`crate::filter`] and [`crate::capture`], both depend on
//! it and not on each other: each gives the shared tree its meaning with its own check. The
//! filter resolves paths against the event model and evaluates on streams; the kernel dialect
//! ([`kernel`]) keeps what BPF can run, and capture resolves those fields through BTF and
//! generates eBPF (`capture::kfilter`). So the same text parses to the same [`Tree`] in both
//! tools, and a syntax error reads the same in both.
//!
//! Contract: errors are [`SyntaxError`]s naming a 1-based column (in characters) of the text;
//! the first error reported is the leftmost one.

pub mod glob;
pub mod kernel;
pub mod lexer;
pub mod parse;
pub mod pcap;
pub mod suggest;

pub use lexer::SyntaxError;
pub use parse::{parse, parse_with, Condition, Name, Op, Tree, Value};
