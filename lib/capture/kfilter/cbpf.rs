//! Classic BPF as libpcap produces it: a pcap-filter(7) expression compiled for a link type
//! (by [`crate::expr::pcap`]) and the instructions taken out of the compiled program. The field
//! layout and opcode values are those of `struct bpf_insn` (bpf(4), Linux
//! Documentation/networking/filter.rst).

use std::fmt;

// Classes.
pub const LD: u16 = 0x00;
pub const LDX: u16 = 0x01;
pub const ST: u16 = 0x02;
pub const STX: u16 = 0x03;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;
pub const MISC: u16 = 0x07;

// Load sizes and modes.
pub const W: u16 = 0x00;
pub const H: u16 = 0x08;
pub const B: u16 = 0x10;
pub const IMM: u16 = 0x00;
pub const ABS: u16 = 0x20;
pub const IND: u16 = 0x40;
pub const MEM: u16 = 0x60;
pub const LEN: u16 = 0x80;
pub const MSH: u16 = 0xa0;

// ALU operations (same values as eBPF's).
pub const ADD: u16 = 0x00;
pub const SUB: u16 = 0x10;
pub const MUL: u16 = 0x20;
pub const DIV: u16 = 0x30;
pub const OR: u16 = 0x40;
pub const AND: u16 = 0x50;
pub const LSH: u16 = 0x60;
pub const RSH: u16 = 0x70;
pub const NEG: u16 = 0x80;
pub const MOD: u16 = 0x90;
pub const XOR: u16 = 0xa0;

// Jumps.
pub const JA: u16 = 0x00;
pub const JEQ: u16 = 0x10;
pub const JGT: u16 = 0x20;
pub const JGE: u16 = 0x30;
pub const JSET: u16 = 0x40;

// Operand source (ALU, JMP) and return value source (RET).
pub const K: u16 = 0x00;
pub const X: u16 = 0x08;
pub const RET_A: u16 = 0x10;

// MISC operations.
pub const TAX: u16 = 0x00;
pub const TXA: u16 = 0x80;

/// Number of scratch memory words `M[]`.
pub const MEMWORDS: u32 = 16;

/// Link types a filter is compiled for (pcap DLT values, not LINKTYPE_ ones).
pub use crate::expr::pcap::{DLT_EN10MB, DLT_RAW};

/// One classic BPF instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub fn class(self) -> u16 {
        self.code & 0x07
    }

    /// Operand size in bytes of a packet load.
    pub fn load_size(self) -> u32 {
        match self.code & 0x18 {
            W => 4,
            H => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Insn {
    /// The `{ code, jt, jf, k }` form of `tcpdump -dd`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ 0x{:x}, {}, {}, 0x{:08x} }}",
            self.code, self.jt, self.jf, self.k
        )
    }
}

/// Compiles `expr` with libpcap ([`crate::expr::pcap::compile`], shared with trail-filter) for
/// link type `dlt` and takes the instructions out. The error is libpcap's own message.
pub fn compile(expr: &str, dlt: i32) -> Result<(Vec<Insn>, pcap::BpfProgram), String> {
    let program = crate::expr::pcap::compile(expr, dlt)?;
    let insns = program
        .get_instructions()
        .iter()
        .map(|insn| parse_display(&insn.to_string()))
        .collect::<Option<Vec<Insn>>>()
        .ok_or_else(|| "unexpected instruction text from the pcap crate".to_string())?;
    Ok((insns, program))
}

/// The `pcap` crate keeps the fields of its instruction type private; its `Display` prints them
/// as `code jt jf k` in decimal, which is stable and needs no unsafe reinterpretation.
fn parse_display(text: &str) -> Option<Insn> {
    let mut fields = text.split_ascii_whitespace();
    let insn = Insn {
        code: fields.next()?.parse().ok()?,
        jt: fields.next()?.parse().ok()?,
        jf: fields.next()?.parse().ok()?,
        k: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(insn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_reads_fields() {
        // `ip` on Ethernet: ldh [12]; jeq #0x800, accept, reject.
        let (insns, _) = compile("ip", DLT_EN10MB).unwrap();
        assert_eq!(
            insns[0],
            Insn {
                code: LD | H | ABS,
                jt: 0,
                jf: 0,
                k: 12
            }
        );
        assert_eq!(insns[1].code, JMP | JEQ | K);
        assert_eq!(insns[1].k, 0x800);
        assert_eq!(insns.len(), 4);
    }

    #[test]
    fn raw_ip_needs_dlt_raw() {
        assert!(compile("tcp", DLT_RAW).is_ok());
        let Err(err) = compile("ether host 1:2:3:4:5:6", DLT_RAW) else {
            panic!("ether host compiled for raw IP");
        };
        assert!(err.contains("ethernet"), "{err}");
        // LINKTYPE_RAW, the pcap file value, is not a DLT libpcap compiles for.
        assert!(compile("tcp", 101).is_err());
    }
}
