//! Evaluating a parsed expression on raw event payloads.
//!
//! A [`Matcher`] is compiled once from the expression: it knows which top-level sections the
//! expression reads, finds just those in each payload (stopping as soon as it has them all),
//! and walks into them in place (see [`super::raw`]). Nothing is decoded into owned types and
//! nothing is allocated per event. A field that is absent, null, or of another type than the
//! value it is compared with makes its comparison false (also for `!=`); `not` is the way to
//! ask for "absent or different".

use std::cmp::Ordering;

use super::parse::{Expr, Literal, Op, Target};
use super::pcap::PcapFilter;
use super::raw::{self, Corrupt, Value};
use crate::expr::glob::Glob;
use crate::model::event::linktype;

/// What can go wrong while evaluating one event.
#[derive(Debug)]
pub enum EvalError {
    /// The payload is not valid MessagePack where the expression looked.
    Corrupt(Corrupt),
    /// A `pcap()` filter does not compile for this event's link type.
    Pcap(String),
}

impl From<Corrupt> for EvalError {
    fn from(why: Corrupt) -> Self {
        EvalError::Corrupt(why)
    }
}

enum Node {
    Const(bool),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Has {
        slot: usize,
        path: Vec<Box<[u8]>>,
    },
    Field {
        slot: usize,
        path: Vec<Box<[u8]>>,
        mask: Option<i128>,
        test: Test,
    },
    Probe {
        slot: usize,
        test: Test,
    },
    Time {
        slot: usize,
        test: Test,
    },
    TrackingId {
        slot: usize,
        test: Test,
    },
    Pcap {
        slot: usize,
        filter: usize,
    },
}

enum Test {
    Compare(Op, Lit),
    Glob { pattern: Glob, negate: bool },
}

enum Lit {
    Int(i128),
    Float(f64),
    Str(Box<[u8]>),
    Bool(bool),
}

/// Per-section context an evaluation needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SectionContext {
    /// Zero of `time`, on the section's clock (see the `filter` module doc).
    pub start_ns: Option<i128>,
}

/// A compiled expression.
pub struct Matcher {
    root: Node,
    /// Top-level keys the expression (and the caller) reads, by slot.
    sections: Vec<Box<[u8]>>,
    pcap: Vec<PcapFilter>,
    found: Vec<Option<(usize, usize)>>,
    scratch: Vec<u8>,
    common: Option<usize>,
    uses_time: bool,
}

impl Matcher {
    /// Compiles `expr`. `extra` names sections the caller wants located in every event as well
    /// (see [`Matcher::section`]). pcap filters are compiled here (for Ethernet), so their
    /// syntax errors come before any input is read; the error carries the filter's column.
    pub fn new(expr: &Expr, extra: &[&str]) -> Result<Matcher, (usize, String)> {
        let mut matcher = Matcher {
            root: Node::Const(true),
            sections: Vec::new(),
            pcap: Vec::new(),
            found: Vec::new(),
            scratch: Vec::with_capacity(64),
            common: None,
            uses_time: false,
        };
        for section in extra {
            matcher.slot(section);
        }
        matcher.root = matcher.compile(expr)?;
        if matcher.uses_time {
            matcher.common = Some(matcher.slot("common"));
        }
        matcher.found = vec![None; matcher.sections.len()];
        Ok(matcher)
    }

    /// Whether the expression uses `time`, whose zero may come from the section's first event.
    pub fn uses_time(&self) -> bool {
        self.uses_time
    }

    fn slot(&mut self, section: &str) -> usize {
        match self
            .sections
            .iter()
            .position(|s| **s == *section.as_bytes())
        {
            Some(slot) => slot,
            None => {
                self.sections.push(section.as_bytes().into());
                self.sections.len() - 1
            }
        }
    }

    fn compile(&mut self, expr: &Expr) -> Result<Node, (usize, String)> {
        let bytes = |path: &[String]| {
            path.iter()
                .map(|p| p.as_bytes().into())
                .collect::<Vec<Box<[u8]>>>()
        };
        Ok(match expr {
            Expr::Const(value) => Node::Const(*value),
            Expr::Not(inner) => Node::Not(Box::new(self.compile(inner)?)),
            Expr::And(a, b) => Node::And(Box::new(self.compile(a)?), Box::new(self.compile(b)?)),
            Expr::Or(a, b) => Node::Or(Box::new(self.compile(a)?), Box::new(self.compile(b)?)),
            Expr::Has(path) => Node::Has {
                slot: self.slot(&path[0]),
                path: bytes(&path[1..]),
            },
            Expr::Compare {
                target,
                mask,
                op,
                value,
            } => {
                let test = test(*op, value);
                match target {
                    Target::Field(path) => Node::Field {
                        slot: self.slot(&path[0]),
                        path: bytes(&path[1..]),
                        mask: *mask,
                        test,
                    },
                    Target::ProbeSpec => Node::Probe {
                        slot: self.slot("probe"),
                        test,
                    },
                    Target::Time => {
                        self.uses_time = true;
                        Node::Time {
                            slot: self.slot("common"),
                            test,
                        }
                    }
                    Target::TrackingId => Node::TrackingId {
                        slot: self.slot("tracking"),
                        test,
                    },
                }
            }
            Expr::Pcap { filter, column } => {
                let compiled = PcapFilter::new(filter, *column).map_err(|message| {
                    (
                        *column,
                        format!("pcap(\"{filter}\") does not compile: {message}"),
                    )
                })?;
                self.pcap.push(compiled);
                Node::Pcap {
                    slot: self.slot("packet"),
                    filter: self.pcap.len() - 1,
                }
            }
        })
    }

    /// Locates the sections in `payload`; must precede [`Matcher::matches`] and
    /// [`Matcher::section`] for that payload.
    pub fn locate(&mut self, payload: &[u8]) -> Result<(), EvalError> {
        let mut found: [Option<&[u8]>; 16] = [None; 16];
        if self.sections.len() <= found.len() {
            raw::index(payload, &self.sections, &mut found[..self.sections.len()])?;
            for (slot, bytes) in self.found.iter_mut().zip(found) {
                *slot = bytes.map(|b| offset_range(payload, b));
            }
        } else {
            let mut found = vec![None; self.sections.len()];
            raw::index(payload, &self.sections, &mut found)?;
            for (slot, bytes) in self.found.iter_mut().zip(found) {
                *slot = bytes.map(|b| offset_range(payload, b));
            }
        }
        Ok(())
    }

    /// The encoded value of a section located by the last [`Matcher::locate`] (by name, among
    /// those the expression reads or the `extra` sections given at compile time).
    pub fn section<'p>(&self, payload: &'p [u8], name: &str) -> Option<&'p [u8]> {
        let slot = self.sections.iter().position(|s| **s == *name.as_bytes())?;
        self.found[slot].map(|(start, end)| &payload[start..end])
    }

    /// `common.timestamp` of the located event, when the expression reads `common`.
    pub fn timestamp(&self, payload: &[u8]) -> Result<Option<i128>, EvalError> {
        match self.section(payload, "common") {
            Some(common) => Ok(raw::get_int(common, b"timestamp")?),
            None => Ok(None),
        }
    }

    /// Evaluates the expression on the event located by the last [`Matcher::locate`].
    pub fn matches(&mut self, payload: &[u8], context: SectionContext) -> Result<bool, EvalError> {
        let mut eval = Eval {
            payload,
            found: &self.found,
            pcap: &mut self.pcap,
            scratch: &mut self.scratch,
            context,
        };
        eval.node(&self.root)
    }
}

fn offset_range(payload: &[u8], inner: &[u8]) -> (usize, usize) {
    let start = inner.as_ptr() as usize - payload.as_ptr() as usize;
    (start, start + inner.len())
}

fn test(op: Op, value: &Literal) -> Test {
    match (op, value) {
        (Op::Glob | Op::NotGlob, Literal::Str(pattern)) => Test::Glob {
            pattern: Glob::new(pattern.as_bytes()),
            negate: op == Op::NotGlob,
        },
        (_, value) => Test::Compare(
            op,
            match value {
                Literal::Int(v) => Lit::Int(*v),
                Literal::Float(v) => Lit::Float(*v),
                Literal::Str(s) => Lit::Str(s.as_bytes().into()),
                Literal::Bool(b) => Lit::Bool(*b),
            },
        ),
    }
}

struct Eval<'a> {
    payload: &'a [u8],
    found: &'a [Option<(usize, usize)>],
    pcap: &'a mut [PcapFilter],
    scratch: &'a mut Vec<u8>,
    context: SectionContext,
}

impl<'a> Eval<'a> {
    fn section(&self, slot: usize) -> Option<&'a [u8]> {
        self.found[slot].map(|(start, end)| &self.payload[start..end])
    }

    fn node(&mut self, node: &Node) -> Result<bool, EvalError> {
        Ok(match node {
            Node::Const(value) => *value,
            Node::Not(inner) => !self.node(inner)?,
            Node::And(a, b) => self.node(a)? && self.node(b)?,
            Node::Or(a, b) => self.node(a)? || self.node(b)?,
            Node::Has { slot, path } => match self.section(*slot) {
                Some(bytes) => resolve(bytes, path, true, &mut |v| v != Value::Nil)?,
                None => false,
            },
            Node::Field {
                slot,
                path,
                mask,
                test,
            } => {
                let Some(bytes) = self.section(*slot) else {
                    return Ok(false);
                };
                let scratch = &mut *self.scratch;
                resolve(bytes, path, false, &mut |value| {
                    let value = match (mask, value) {
                        (None, value) => value,
                        (Some(mask), Value::Int(v)) => Value::Int(v & mask),
                        (Some(_), _) => return false,
                    };
                    check(test, value, scratch)
                })?
            }
            Node::Probe { slot, test } => {
                let Some(bytes) = self.section(*slot) else {
                    return Ok(false);
                };
                self.probe_spec(bytes)?;
                let spec = std::mem::take(self.scratch);
                let verdict = check(test, Value::Str(&spec), self.scratch);
                *self.scratch = spec;
                verdict
            }
            Node::Time { slot, test } => {
                let (Some(bytes), Some(start)) = (self.section(*slot), self.context.start_ns)
                else {
                    return Ok(false);
                };
                match raw::get_int(bytes, b"timestamp")? {
                    Some(ts) => check(test, Value::Int(ts - start), self.scratch),
                    None => false,
                }
            }
            Node::TrackingId { slot, test } => {
                let Some(bytes) = self.section(*slot) else {
                    return Ok(false);
                };
                let first_seen = raw::get_int(bytes, b"first_seen")?.unwrap_or(0);
                let orig_head = raw::get_int(bytes, b"orig_head")?.unwrap_or(0);
                let mut id = std::mem::take(self.scratch);
                id.clear();
                use std::io::Write;
                let _ = write!(id, "{first_seen:x}-{orig_head:x}");
                let verdict = check(test, Value::Str(&id), self.scratch);
                *self.scratch = id;
                verdict
            }
            Node::Pcap { slot, filter } => {
                let Some(bytes) = self.section(*slot) else {
                    return Ok(false);
                };
                let Some(packet) = packet(bytes)? else {
                    return Ok(false);
                };
                self.pcap[*filter]
                    .matches(packet.linktype, packet.data, packet.len)
                    .map_err(EvalError::Pcap)?
            }
        })
    }

    /// Writes the probe spec (`tp:skb:kfree_skb`) of a `probe` section into the scratch buffer.
    fn probe_spec(&mut self, bytes: &[u8]) -> Result<(), EvalError> {
        self.scratch.clear();
        let mut rest = bytes;
        let Value::Map(count) = raw::read(&mut rest)? else {
            return Ok(());
        };
        // The defaults are those of the typed model: a missing kind is a tracepoint.
        let mut kind: &[u8] = b"tracepoint";
        let mut name: &[u8] = b"";
        for _ in 0..count {
            let key = raw::read(&mut rest)?;
            let start = rest;
            match (key, raw::read(&mut rest)?) {
                (Value::Str(b"kind"), Value::Str(v)) => kind = v,
                (Value::Str(b"name"), Value::Str(v)) => name = v,
                (_, Value::Array(_) | Value::Map(_)) => {
                    // A field this build does not know: step over all of it.
                    rest = start;
                    raw::skip(&mut rest)?;
                }
                _ => {}
            }
        }
        let marker: &[u8] = match kind {
            b"tracepoint" => b"tp",
            b"kprobe" => b"k",
            b"kretprobe" => b"kr",
            b"fentry" => b"f",
            b"fexit" => b"fx",
            b"pcap-import" => b"pcap",
            _ => b"?",
        };
        self.scratch.extend_from_slice(marker);
        self.scratch.push(b':');
        self.scratch.extend_from_slice(name);
        Ok(())
    }
}

/// The bytes of a `packet` section and how to read them.
struct PacketView<'a> {
    data: &'a [u8],
    len: u32,
    linktype: u32,
}

fn packet(bytes: &[u8]) -> Result<Option<PacketView<'_>>, Corrupt> {
    let mut rest = bytes;
    let Value::Map(count) = raw::read(&mut rest)? else {
        return Ok(None);
    };
    let (mut data, mut len, mut link, mut layer3) = (None, 0u32, None, false);
    for _ in 0..count {
        let key = raw::read(&mut rest)?;
        let start = rest;
        let value = raw::read(&mut rest)?;
        match (key, value) {
            (Value::Str(b"data"), Value::Bin(d) | Value::Str(d)) => data = Some(d),
            (Value::Str(b"len"), Value::Int(v)) => len = u32::try_from(v).unwrap_or(u32::MAX),
            (Value::Str(b"linktype"), Value::Int(v)) => link = u32::try_from(v).ok(),
            (Value::Str(b"layer"), Value::Str(v)) => layer3 = v == b"l3",
            (_, Value::Array(_) | Value::Map(_)) => {
                rest = start;
                raw::skip(&mut rest)?;
            }
            _ => {}
        }
    }
    // A producer that did not say the link type: derive it from where the bytes start.
    let linktype = link.unwrap_or(if layer3 {
        linktype::RAW
    } else {
        linktype::ETHERNET
    });
    Ok(data.filter(|d| !d.is_empty()).map(|data| PacketView {
        data,
        len,
        linktype,
    }))
}

/// Walks `path` from the value at the start of `bytes`, calling `test` on what it reaches; a
/// list on the way fans out (the test passes if it passes for any element). With `whole`, a
/// container at the end is handed to `test` as is instead of being fanned out.
fn resolve(
    bytes: &[u8],
    path: &[Box<[u8]>],
    whole: bool,
    test: &mut dyn FnMut(Value) -> bool,
) -> Result<bool, Corrupt> {
    let mut rest = bytes;
    let value = raw::read(&mut rest)?;
    match (path.split_first(), value) {
        (Some((name, tail)), Value::Map(count)) => match raw::map_get(&mut rest, count, name)? {
            Some(inner) => resolve(inner, tail, whole, test),
            None => Ok(false),
        },
        (_, Value::Array(count)) if !(whole && path.is_empty()) => {
            for _ in 0..count {
                let start = rest;
                raw::skip(&mut rest)?;
                if resolve(&start[..start.len() - rest.len()], path, whole, test)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        (Some(_), _) => Ok(false),
        (None, value) => Ok(test(value)),
    }
}

/// Applies a test to one value. `scratch` holds text forms (hex, decimal) when needed.
fn check(test: &Test, value: Value, scratch: &mut Vec<u8>) -> bool {
    match test {
        Test::Compare(op, lit) => {
            let ordering = match (value, lit) {
                (Value::Int(a), Lit::Int(b)) => a.cmp(b),
                (Value::Int(a), Lit::Float(b)) => match (a as f64).partial_cmp(b) {
                    Some(o) => o,
                    None => return false,
                },
                (Value::Float(a), Lit::Int(b)) => match a.partial_cmp(&(*b as f64)) {
                    Some(o) => o,
                    None => return false,
                },
                (Value::Float(a), Lit::Float(b)) => match a.partial_cmp(b) {
                    Some(o) => o,
                    None => return false,
                },
                (Value::Str(a), Lit::Str(b)) => a.cmp(b),
                (Value::Bin(a), Lit::Str(b)) => {
                    hex_into(a, scratch);
                    scratch.as_slice().cmp(b)
                }
                (Value::Bool(a), Lit::Bool(b)) => a.cmp(b),
                _ => return false,
            };
            match op {
                Op::Eq => ordering == Ordering::Equal,
                Op::Ne => ordering != Ordering::Equal,
                Op::Lt => ordering == Ordering::Less,
                Op::Le => ordering != Ordering::Greater,
                Op::Gt => ordering == Ordering::Greater,
                Op::Ge => ordering != Ordering::Less,
                Op::Glob | Op::NotGlob => unreachable!("globs compile to Test::Glob"),
            }
        }
        Test::Glob { pattern, negate } => {
            use std::io::Write;
            let text: &[u8] = match value {
                Value::Str(s) => s,
                Value::Bin(b) => {
                    hex_into(b, scratch);
                    scratch
                }
                Value::Int(v) => {
                    scratch.clear();
                    let _ = write!(scratch, "{v}");
                    scratch
                }
                Value::Float(v) => {
                    scratch.clear();
                    let _ = write!(scratch, "{v}");
                    scratch
                }
                Value::Bool(b) => {
                    if b {
                        b"true"
                    } else {
                        b"false"
                    }
                }
                Value::Nil | Value::Array(_) | Value::Map(_) | Value::Ext => return false,
            };
            pattern.matches(text) != *negate
        }
    }
}

fn hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.clear();
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}
