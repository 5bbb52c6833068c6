//! The meta filter of trail-capture (`-m`): predicates on the fields of the `struct sk_buff` a
//! probe sees and on what hangs off it, e.g. `skb.mark == 0x10`, `skb.dev.name == "veth0"`,
//! `skb.len > 1000 && !(skb.dev.nd_net.net.ns.inum == 4026531840)`.
//!
//! Fields are resolved through the running kernel's BTF, so no offset is compiled in: anonymous
//! structs and unions are looked through, pointers are followed where the path continues past
//! them, bitfields are extracted. The expression compiles to one eBPF function,
//! `u32 meta(struct sk_buff *skb)`, that reads every field with `bpf_probe_read_kernel` (helper
//! 113), as tracing programs must, and returns 1 to keep the packet.
//!
//! The language is trail's one expression language (`crate::expr`, the same as trail-filter's),
//! checked against its kernel dialect (`crate::expr::kernel`): `||`/`or`, `&&`/`and`, `!`/`not`,
//! parentheses; a comparison is `PATH [& MASK] [OP VALUE]` with OP one of `== != < <= > >=` and
//! VALUE a number (decimal, `0x` hex) or, for `char` arrays, a string in either quote
//! (`==`/`!=` only). A bare PATH (or `has PATH`) means `PATH != 0`. Integers compare as
//! unsigned 64-bit values. A field behind a NULL pointer (or one that cannot be read) makes its
//! comparison false, so `!` of it is true.

use std::fmt;

use libbpf_rs::btf::types::{Array, Composite, Int, MemberAttr};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, HasSize};

use super::ebpf::{self, Insn, R0, R1, R10, R2, R3, R6, R7};

/// Why a meta expression is refused. Messages name the expression part at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError(pub String);

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MetaError {}

fn error<T>(message: impl Into<String>) -> Result<T, MetaError> {
    Err(MetaError(message.into()))
}

// ---------------------------------------------------------------------------------------------
// Syntax: the shared language, checked against the kernel dialect

pub use crate::expr::kernel::{CmpOp, Compare, Expr, KernelValue as Value};
use crate::expr::Tree;

/// Parses a meta expression: the shared grammar (`crate::expr`), then the kernel dialect check.
pub fn parse(text: &str) -> Result<Expr, MetaError> {
    crate::expr::kernel::parse(text).map_err(|e| MetaError(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Fields, resolved through BTF

/// What a field path reads: pointer hops, then the leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Byte offsets of the pointers to follow, each relative to the previous pointee (the first
    /// to the skb).
    pub hops: Vec<u32>,
    /// Byte offset of the leaf in the last pointee.
    pub offset: u32,
    pub leaf: Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// An integer, enum or pointer of 1, 2, 4 or 8 bytes.
    Int { size: u32 },
    /// A bitfield: `bits` bits starting `bit` bits after `offset`.
    Bits { bit: u32, bits: u32 },
    /// A `char` array of `len` bytes, compared as a NUL-terminated string.
    Chars { len: u32 },
}

/// A struct or union member, with anonymous members looked through: (bit offset, type id,
/// bitfield size or 0).
fn find_member(btf: &Btf<'_>, ty: BtfType<'_>, name: &str) -> Option<(u32, u32, u8)> {
    let composite = Composite::try_from(ty.skip_mods_and_typedefs()).ok()?;
    for member in composite.iter() {
        let (offset, bits) = match member.attr {
            MemberAttr::Normal { offset } => (offset, 0),
            MemberAttr::BitField { size, offset } => (offset, size),
        };
        match member.name.and_then(|n| n.to_str()) {
            Some(n) if n == name => return Some((offset, member.ty.into(), bits)),
            None | Some("") => {
                let inner: BtfType<'_> = btf.type_by_id(member.ty)?;
                if let Some((o, t, b)) = find_member(btf, inner, name) {
                    return Some((offset + o, t, b));
                }
            }
            _ => {}
        }
    }
    None
}

/// Member names of a struct (anonymous members flattened), for "did you mean".
fn member_names(btf: &Btf<'_>, ty: BtfType<'_>, out: &mut Vec<String>) {
    let Ok(composite) = Composite::try_from(ty.skip_mods_and_typedefs()) else {
        return;
    };
    for member in composite.iter() {
        match member.name.and_then(|n| n.to_str()) {
            None | Some("") => {
                if let Some(inner) = btf.type_by_id::<BtfType<'_>>(member.ty) {
                    member_names(btf, inner, out);
                }
            }
            Some(n) => out.push(n.to_string()),
        }
    }
}

/// Up to five members close to `wanted`, by the language's one did-you-mean ranking.
fn close_matches(names: &[String], wanted: &str) -> Vec<String> {
    crate::expr::suggest::close_matches(wanted, names.iter().map(String::as_str))
        .into_iter()
        .take(5)
        .map(String::from)
        .collect()
}

fn type_name(ty: BtfType<'_>) -> String {
    let kind = match ty.kind() {
        BtfKind::Struct => "struct ",
        BtfKind::Union => "union ",
        _ => "",
    };
    format!(
        "{kind}{}",
        ty.name().and_then(|n| n.to_str()).unwrap_or("(anonymous)")
    )
}

/// Resolves `skb.a.b.c` against the kernel's `struct sk_buff`.
pub fn resolve(btf: &Btf<'_>, path: &[String]) -> Result<Field, MetaError> {
    let shown = path.join(".");
    if path.first().map(String::as_str) != Some("skb") || path.len() < 2 {
        return error(format!(
            "meta field {shown:?} must start with `skb.` (e.g. skb.mark, skb.dev.name)"
        ));
    }
    let mut ty: BtfType<'_> = btf
        .type_by_name::<BtfType<'_>>("sk_buff")
        .ok_or_else(|| MetaError("the kernel's BTF has no struct sk_buff".into()))?;
    let mut hops = Vec::new();
    let mut bit_offset = 0u32;
    let mut bitfield = 0u8;
    for (i, name) in path.iter().enumerate().skip(1) {
        let current = ty.skip_mods_and_typedefs();
        // Going through a pointer: what came so far is the pointer's offset.
        let current = if current.kind() == BtfKind::Ptr {
            let pointee = current
                .next_type()
                .map(|t| t.skip_mods_and_typedefs())
                .filter(|t| matches!(t.kind(), BtfKind::Struct | BtfKind::Union))
                .ok_or_else(|| {
                    MetaError(format!(
                        "meta field {shown:?}: {} is a pointer to something without fields",
                        path[..i].join(".")
                    ))
                })?;
            hops.push(bit_offset / 8);
            bit_offset = 0;
            pointee
        } else {
            current
        };
        if !matches!(current.kind(), BtfKind::Struct | BtfKind::Union) {
            return error(format!(
                "meta field {shown:?}: {} is not a struct, it has no field {name:?}",
                path[..i].join(".")
            ));
        }
        let Some((offset, member_ty, bits)) = find_member(btf, current, name) else {
            let mut names = Vec::new();
            member_names(btf, current, &mut names);
            let close = close_matches(&names, name);
            let hint = if close.is_empty() {
                String::new()
            } else {
                format!("; close matches: {}", close.join(", "))
            };
            return error(format!(
                "meta field {shown:?}: {} has no field {name:?}{hint}",
                type_name(current)
            ));
        };
        bit_offset += offset;
        bitfield = bits;
        ty = btf
            .type_by_id::<BtfType<'_>>(member_ty.into())
            .ok_or_else(|| MetaError(format!("meta field {shown:?}: broken BTF")))?;
    }
    let leaf_ty = ty.skip_mods_and_typedefs();
    let leaf = if bitfield != 0 {
        Leaf::Bits {
            bit: bit_offset % 8,
            bits: u32::from(bitfield),
        }
    } else {
        match leaf_ty.kind() {
            BtfKind::Int => Leaf::Int {
                size: Int::try_from(leaf_ty).map(|i| i.size() as u32).unwrap_or(0),
            },
            BtfKind::Enum | BtfKind::Enum64 => Leaf::Int {
                size: btf_size(leaf_ty),
            },
            BtfKind::Ptr => Leaf::Int { size: 8 },
            BtfKind::Array => {
                let array = Array::try_from(leaf_ty).expect("kind checked");
                let element = array.contained_type().skip_mods_and_typedefs();
                let is_char = element.kind() == BtfKind::Int
                    && Int::try_from(element).is_ok_and(|i| i.size() == 1);
                if !is_char {
                    return error(format!(
                        "meta field {shown:?} is an array of something else than char"
                    ));
                }
                Leaf::Chars {
                    len: array.capacity() as u32,
                }
            }
            _ => {
                return error(format!(
                "meta field {shown:?} is a {}, not a number or a string; name one of its fields",
                type_name(leaf_ty)
            ))
            }
        }
    };
    if let Leaf::Int { size } = leaf {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return error(format!(
                "meta field {shown:?} has {size} bytes; only 1, 2, 4 and 8 compare"
            ));
        }
    }
    let leaf = match leaf {
        Leaf::Bits { bits, .. } if bits > 56 => {
            return error(format!("meta field {shown:?}: bitfield of {bits} bits"))
        }
        other => other,
    };
    Ok(Field {
        hops,
        offset: bit_offset / 8,
        leaf,
    })
}

fn btf_size(ty: BtfType<'_>) -> u32 {
    match ty.kind() {
        BtfKind::Enum => libbpf_rs::btf::types::Enum::try_from(ty)
            .map(|e| e.size() as u32)
            .unwrap_or(0),
        BtfKind::Enum64 => libbpf_rs::btf::types::Enum64::try_from(ty)
            .map(|e| e.size() as u32)
            .unwrap_or(0),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Code generation

/// A comparison with its field resolved.
#[derive(Debug, Clone)]
pub enum Resolved {
    Const(bool),
    Or(Box<Resolved>, Box<Resolved>),
    And(Box<Resolved>, Box<Resolved>),
    Not(Box<Resolved>),
    Cmp {
        field: Field,
        mask: Option<u64>,
        op: CmpOp,
        value: Value,
    },
}

/// Resolves every field of `expr` and checks that values suit their fields.
pub fn resolve_expr(btf: &Btf<'_>, expr: &Expr) -> Result<Resolved, MetaError> {
    Ok(match expr {
        Tree::Const(b) => Resolved::Const(*b),
        Tree::Or(a, b) => Resolved::Or(
            Box::new(resolve_expr(btf, a)?),
            Box::new(resolve_expr(btf, b)?),
        ),
        Tree::And(a, b) => Resolved::And(
            Box::new(resolve_expr(btf, a)?),
            Box::new(resolve_expr(btf, b)?),
        ),
        Tree::Not(a) => Resolved::Not(Box::new(resolve_expr(btf, a)?)),
        Tree::Leaf(Compare {
            path,
            mask,
            op,
            value,
        }) => {
            let field = resolve(btf, path)?;
            check_value(&path.join("."), &field, *mask, *op, value)?;
            Resolved::Cmp {
                field,
                mask: *mask,
                op: *op,
                value: value.clone(),
            }
        }
    })
}

fn check_value(
    shown: &str,
    field: &Field,
    mask: Option<u64>,
    op: CmpOp,
    value: &Value,
) -> Result<(), MetaError> {
    match (&field.leaf, value) {
        (Leaf::Chars { len }, Value::Str(s)) => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return error(format!(
                    "meta field {shown}: strings compare with == or != only"
                ));
            }
            if mask.is_some() {
                return error(format!("meta field {shown}: a string takes no mask"));
            }
            if s.len() >= STR_MAX as usize {
                return error(format!(
                    "meta field {shown}: strings of up to {} bytes compare",
                    STR_MAX - 1
                ));
            }
            if s.len() > *len as usize || s.contains('\0') {
                return error(format!(
                    "meta field {shown} holds at most {len} bytes; {s:?} cannot match"
                ));
            }
            Ok(())
        }
        (Leaf::Chars { .. }, Value::Number(_)) => error(format!(
            "meta field {shown} is a string: compare it with \"text\""
        )),
        (_, Value::Str(_)) => error(format!("meta field {shown} is a number, not a string")),
        _ => Ok(()),
    }
}

/// Stack: an 8-byte buffer for integer and pointer reads, and a string buffer below it.
const BUF: i16 = -8;
const STR_MAX: u32 = 64;
const STR_BUF: i16 = -8 - STR_MAX as i16;

struct Gen {
    out: Vec<Insn>,
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Gen {
    fn new_label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.out.len());
    }

    fn jump(&mut self, insn: Insn, label: usize) {
        self.fixups.push((self.out.len(), label));
        self.out.push(insn);
    }

    fn push(&mut self, insn: Insn) {
        self.out.push(insn);
    }

    /// `bpf_probe_read_kernel(r10 + dst, size, r7 + offset)`, to `fail` when it fails.
    fn read(&mut self, dst: i16, size: u32, offset: u32, fail: usize) {
        self.push(Insn::alu64_reg(ebpf::MOV, R1, R10));
        self.push(Insn::alu64_imm(ebpf::ADD, R1, i32::from(dst)));
        self.push(Insn::alu64_imm(ebpf::MOV, R2, size as i32));
        self.push(Insn::alu64_reg(ebpf::MOV, R3, R7));
        if offset != 0 {
            self.push(Insn::alu64_imm(ebpf::ADD, R3, offset as i32));
        }
        self.push(Insn::call_helper(ebpf::HELPER_PROBE_READ_KERNEL));
        self.jump(Insn::jmp_imm(ebpf::JNE, R0, 0, 0), fail);
    }

    fn load_const(&mut self, reg: u8, value: u64) {
        if value <= i32::MAX as u64 {
            self.push(Insn::alu64_imm(ebpf::MOV, reg, value as i32));
        } else {
            for insn in Insn::load_imm64(reg, value) {
                self.push(insn);
            }
        }
    }

    fn emit(&mut self, expr: &Resolved, on_true: usize, on_false: usize) {
        match expr {
            Resolved::Or(a, b) => {
                let next = self.new_label();
                self.emit(a, on_true, next);
                self.place(next);
                self.emit(b, on_true, on_false);
            }
            Resolved::And(a, b) => {
                let next = self.new_label();
                self.emit(a, next, on_false);
                self.place(next);
                self.emit(b, on_true, on_false);
            }
            Resolved::Not(a) => self.emit(a, on_false, on_true),
            Resolved::Const(verdict) => {
                self.jump(Insn::ja(0), if *verdict { on_true } else { on_false })
            }
            Resolved::Cmp {
                field,
                mask,
                op,
                value,
            } => self.comparison(field, *mask, *op, value, on_true, on_false),
        }
    }

    fn comparison(
        &mut self,
        field: &Field,
        mask: Option<u64>,
        op: CmpOp,
        value: &Value,
        on_true: usize,
        on_false: usize,
    ) {
        // r7: the struct the leaf is in, after following the pointers from the skb (r6).
        self.push(Insn::alu64_reg(ebpf::MOV, R7, R6));
        for &hop in &field.hops {
            self.read(BUF, 8, hop, on_false);
            self.push(Insn::load(ebpf::DW, R7, R10, BUF));
            self.jump(Insn::jmp_imm(ebpf::JEQ, R7, 0, 0), on_false);
        }
        match (field.leaf, value) {
            (Leaf::Chars { len }, Value::Str(text)) => {
                // Compare the text and its NUL (when the array has room for it) bytewise in
                // 8-byte words, then the tail in 4/2/1-byte loads.
                let mut bytes = text.as_bytes().to_vec();
                if bytes.len() < len as usize {
                    bytes.push(0);
                }
                let count = bytes.len().min(STR_MAX as usize) as u32;
                let (equal, differ) = match op {
                    CmpOp::Ne => (on_false, on_true),
                    _ => (on_true, on_false),
                };
                // A read that fails is "field unreadable": the comparison is false either way.
                self.read(STR_BUF, count, field.offset, on_false);
                let mut at = 0usize;
                for width in [8usize, 4, 2, 1] {
                    while bytes.len() - at >= width && at < count as usize {
                        let mut word = [0u8; 8];
                        word[..width].copy_from_slice(&bytes[at..at + width]);
                        let size = match width {
                            8 => ebpf::DW,
                            4 => ebpf::W,
                            2 => ebpf::H,
                            _ => ebpf::B,
                        };
                        self.push(Insn::load(size, R0, R10, STR_BUF + at as i16));
                        self.load_const(R1, u64::from_le_bytes(word));
                        self.jump(Insn::jmp_reg(ebpf::JNE, R0, R1, 0), differ);
                        at += width;
                    }
                }
                self.jump(Insn::ja(0), equal);
            }
            (leaf, Value::Number(number)) => {
                let (size, shift, bits) = match leaf {
                    Leaf::Int { size } => (size, 0, size * 8),
                    Leaf::Bits { bit, bits } => ((bit + bits).div_ceil(8), bit, bits),
                    Leaf::Chars { .. } => unreachable!("checked by check_value"),
                };
                self.push(Insn::store_imm(ebpf::DW, R10, BUF, 0));
                self.read(BUF, size, field.offset, on_false);
                self.push(Insn::load(ebpf::DW, R0, R10, BUF));
                if shift != 0 {
                    self.push(Insn::alu64_imm(ebpf::RSH, R0, shift as i32));
                }
                if bits < 64 {
                    self.load_const(R1, (1u64 << bits) - 1);
                    self.push(Insn::alu64_reg(ebpf::AND, R0, R1));
                }
                if let Some(mask) = mask {
                    self.load_const(R1, mask);
                    self.push(Insn::alu64_reg(ebpf::AND, R0, R1));
                }
                self.load_const(R1, *number);
                let jop = match op {
                    CmpOp::Eq => ebpf::JEQ,
                    CmpOp::Ne => ebpf::JNE,
                    CmpOp::Lt => ebpf::JLT,
                    CmpOp::Le => ebpf::JLE,
                    CmpOp::Gt => ebpf::JGT,
                    CmpOp::Ge => ebpf::JGE,
                };
                self.jump(Insn::jmp_reg(jop, R0, R1, 0), on_true);
                self.jump(Insn::ja(0), on_false);
            }
            (_, Value::Str(_)) => unreachable!("checked by check_value"),
        }
    }
}

/// Compiles a resolved expression to the body of `u32 meta(struct sk_buff *skb)`.
pub fn compile(expr: &Resolved) -> Vec<Insn> {
    let mut gen = Gen {
        out: vec![Insn::alu64_reg(ebpf::MOV, R6, R1)],
        fixups: Vec::new(),
        labels: Vec::new(),
    };
    let on_true = gen.new_label();
    let on_false = gen.new_label();
    gen.emit(expr, on_true, on_false);
    for (label, verdict) in [(on_true, 1), (on_false, 0)] {
        gen.place(label);
        gen.push(Insn::alu32_imm(ebpf::MOV, R0, verdict));
        gen.push(Insn::exit());
    }
    for (at, label) in std::mem::take(&mut gen.fixups) {
        let to = gen.labels[label].expect("every label is placed");
        gen.out[at].off = (to as i64 - at as i64 - 1) as i16;
    }
    gen.out
}

/// Parses, resolves and compiles `text`.
pub fn build(btf: &Btf<'_>, text: &str) -> Result<Vec<Insn>, MetaError> {
    let expr = parse(text).map_err(|e| MetaError(format!("meta filter {text:?}: {e}")))?;
    let resolved = resolve_expr(btf, &expr)?;
    Ok(compile(&resolved))
}

/// Escapes `text` as a string literal of the language (for the shortcuts): a backslash is
/// escaped, so that it stays itself.
pub fn quote(text: &str) -> Result<String, MetaError> {
    if text.contains('"') {
        return error(format!("{text:?} contains a double quote"));
    }
    Ok(format!("\"{}\"", text.replace('\\', "\\\\")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_quote_names_so_they_stay_themselves() {
        for name in ["veth0", "we\\ird", "tab\there"] {
            let text = format!("skb.dev.name == {}", quote(name).unwrap());
            let Tree::Leaf(compare) = parse(&text).unwrap() else {
                panic!("{text}: one comparison")
            };
            assert_eq!(compare.value, Value::Str(name.to_string()), "{text}");
        }
        assert!(quote("a\"b").is_err());
    }

    #[test]
    fn syntax_errors_name_the_column() {
        for (text, wanted) in [
            ("skb.mark ==", "column"),
            ("skb.mark == 0xzz", "not a number"),
            ("(skb.mark", "')'"),
            ("skb.dev.name == \"x", "unterminated"),
            ("skb.mark $ 1", "unexpected character"),
            ("", "empty"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(wanted), "{text:?}: {err}");
        }
    }

    #[test]
    fn close_matches_rank_near_names() {
        let names: Vec<String> = ["mark", "mac_len", "len", "data_len", "hash"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(close_matches(&names, "mrk")[0], "mark");
        assert!(close_matches(&names, "zzzzzzzz").is_empty());
    }
}
