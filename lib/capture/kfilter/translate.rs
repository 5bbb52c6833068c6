//! Classic BPF to eBPF, written from the two instruction-set specifications.
//!
//! The output is one BPF function, `u32 filter(void *data, u32 caplen, u32 wirelen)`: `r1` points
//! at the first byte the classic program sees (the Ethernet header for the L2 variant, the IP
//! header for the L3 one), `r2` is how many bytes may be read from there, `r3` the packet's
//! length on the wire (what `len` and `greater`/`less` compare). It returns the classic
//! program's return value: 0 rejects, anything else accepts.
//!
//! Mapping:
//! - `A` in `r8`, `X` in `r9`, both kept zero-extended by using 32-bit ALU operations and
//!   32-bit compares (JMP32), so immediates above 2^31 compare as unsigned like in classic BPF;
//! - the packet pointer in `r6`, `caplen` in `r7` (callee-saved, they survive helper calls);
//! - the wire length and `M[0..16]` in the function's stack frame, one 4-byte slot each, plus an
//!   8-byte buffer that packet loads read into.
//!
//! Packet loads cannot dereference the pointer in a tracing program: each one checks
//! `offset + size <= caplen` (classic BPF rejects the packet when a load falls outside the
//! buffer, and so do we), then copies the bytes with `bpf_probe_read_kernel` (helper 113) into
//! the stack buffer and byte-swaps them to host order. A failing copy rejects too.
//!
//! Classic semantics kept on purpose: division or modulo by an `X` of zero rejects the packet
//! (libpcap's interpreter returns 0 there, while eBPF would yield 0 and carry on); a shift by
//! 32 or more yields 0 (eBPF would use the amount's low five bits).
//! Instructions no path reaches are not emitted, because the kernel verifier refuses
//! unreachable code. Backward jumps (libpcap emits one for `protochain`) are refused: the
//! verifier would need a provable loop bound, and classic BPF has none.

use std::fmt;

use super::cbpf;
use super::ebpf::{self, Insn, R0, R1, R10, R2, R3, R6, R7, R8, R9};

/// Stack slots, relative to the frame pointer `r10`.
const BUF: i16 = -8;
const WIRELEN: i16 = -12;
fn mem_slot(index: u32) -> i16 {
    -16 - 4 * (index as i16) - 4
}

/// Why a classic program has no translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranslateError {
    /// A jump to an earlier instruction (a loop), as `ip6 protochain` and `protochain` produce.
    BackwardJump {
        pc: usize,
    },
    /// A jump past the last instruction, or a path that runs off the end.
    OutOfRange {
        pc: usize,
    },
    /// An opcode outside what classic BPF defines (or that libpcap never emits).
    Unsupported {
        pc: usize,
        code: u16,
    },
    /// `M[k]` with `k >= 16`.
    BadScratch {
        pc: usize,
        index: u32,
    },
    /// A constant division or modulo by zero.
    DivisionByZero {
        pc: usize,
    },
    /// The eBPF body has more instructions than a jump offset can span.
    TooLarge {
        insns: usize,
    },
    Empty,
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TranslateError::BackwardJump { pc } => write!(
                f,
                "classic BPF instruction {pc} jumps backward (a loop, as `protochain` compiles \
                 to); loops cannot be run in the kernel filter"
            ),
            TranslateError::OutOfRange { pc } => {
                write!(f, "classic BPF instruction {pc} jumps or runs past the end")
            }
            TranslateError::Unsupported { pc, code } => {
                write!(
                    f,
                    "classic BPF instruction {pc} has unsupported opcode {code:#06x}"
                )
            }
            TranslateError::BadScratch { pc, index } => {
                write!(
                    f,
                    "classic BPF instruction {pc} uses scratch word M[{index}]"
                )
            }
            TranslateError::DivisionByZero { pc } => {
                write!(f, "classic BPF instruction {pc} divides by the constant 0")
            }
            TranslateError::TooLarge { insns } => {
                write!(
                    f,
                    "the translation has {insns} eBPF instructions, too many to jump over"
                )
            }
            TranslateError::Empty => f.write_str("empty classic BPF program"),
        }
    }
}

impl std::error::Error for TranslateError {}

/// Where a jump goes, resolved once every classic instruction has its eBPF position.
#[derive(Clone, Copy)]
enum Target {
    Classic(usize),
    Reject,
}

struct Emitter {
    out: Vec<Insn>,
    fixups: Vec<(usize, Target)>,
    rejects: bool,
}

impl Emitter {
    fn push(&mut self, insn: Insn) {
        self.out.push(insn);
    }

    /// A jump whose offset is filled in later.
    fn jump(&mut self, insn: Insn, target: Target) {
        if matches!(target, Target::Reject) {
            self.rejects = true;
        }
        self.fixups.push((self.out.len(), target));
        self.out.push(insn);
    }

    /// Copies `size` packet bytes at `data + r3` (when `offset` is None: r3 already holds the
    /// 64-bit offset) or at `data + offset` into `dst`, in host byte order.
    fn load_packet(&mut self, dst: u8, size: u32, offset: Option<u32>) {
        match offset {
            Some(k) => {
                // Callers made sure k + size fits in i32 (see `constant_load_fails`).
                let end = (k + size) as i32;
                self.jump(Insn::jmp_imm(ebpf::JLT, R7, end, 0), Target::Reject);
                self.push(Insn::alu64_reg(ebpf::MOV, R3, R6));
                if k != 0 {
                    self.push(Insn::alu64_imm(ebpf::ADD, R3, k as i32));
                }
            }
            None => {
                self.push(Insn::alu64_reg(ebpf::MOV, R2, R3));
                self.push(Insn::alu64_imm(ebpf::ADD, R2, size as i32));
                self.jump(Insn::jmp_reg(ebpf::JGT, R2, R7, 0), Target::Reject);
                self.push(Insn::alu64_reg(ebpf::ADD, R3, R6));
            }
        }
        self.push(Insn::alu64_reg(ebpf::MOV, R1, R10));
        self.push(Insn::alu64_imm(ebpf::ADD, R1, BUF as i32));
        self.push(Insn::alu64_imm(ebpf::MOV, R2, size as i32));
        self.push(Insn::call_helper(ebpf::HELPER_PROBE_READ_KERNEL));
        self.jump(Insn::jmp_imm(ebpf::JNE, R0, 0, 0), Target::Reject);
        let (width, bits) = match size {
            4 => (ebpf::W, 32),
            2 => (ebpf::H, 16),
            _ => (ebpf::B, 0),
        };
        self.push(Insn::load(width, dst, R10, BUF));
        if bits != 0 {
            self.push(Insn::to_be(dst, bits));
        }
    }

    /// `r3 = (u64)X + k`, the offset of an indexed load, computed without 32-bit wrap-around
    /// so that an offset past 4 GiB fails the bounds check as in classic BPF.
    fn indexed_offset(&mut self, k: u32) {
        self.push(Insn::alu32_reg(ebpf::MOV, R3, R9));
        if k != 0 {
            // A 32-bit move zero-extends, where a 64-bit add of the immediate would sign-extend.
            self.push(Insn::alu32_imm(ebpf::MOV, R2, k as i32));
            self.push(Insn::alu64_reg(ebpf::ADD, R3, R2));
        }
    }
}

/// A constant-offset load that can never be in bounds: the kernel cannot hold a buffer of
/// 2 GiB, and the bounds check compares with a sign-extended 32-bit immediate.
fn constant_load_fails(insn: cbpf::Insn) -> bool {
    u64::from(insn.k) + u64::from(insn.load_size()) > i32::MAX as u64
}

/// Classic instructions that can run, from the first one; also checks every jump target.
fn reachable(prog: &[cbpf::Insn]) -> Result<Vec<bool>, TranslateError> {
    let mut seen = vec![false; prog.len()];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        if pc >= prog.len() {
            // Only reached through the checks below, which name the faulty instruction.
            continue;
        }
        if std::mem::replace(&mut seen[pc], true) {
            continue;
        }
        let insn = prog[pc];
        let next = |offset: u64| -> Result<usize, TranslateError> {
            let target = pc as u64 + 1 + offset;
            if target >= prog.len() as u64 {
                return Err(TranslateError::OutOfRange { pc });
            }
            Ok(target as usize)
        };
        match insn.class() {
            cbpf::RET => {}
            cbpf::JMP if insn.code & 0xf0 == cbpf::JA => {
                if (insn.k as i32) < 0 {
                    return Err(TranslateError::BackwardJump { pc });
                }
                todo.push(next(u64::from(insn.k))?);
            }
            cbpf::JMP => {
                todo.push(next(u64::from(insn.jt))?);
                todo.push(next(u64::from(insn.jf))?);
            }
            cbpf::LD | cbpf::LDX
                if matches!(insn.code & 0xe0, cbpf::ABS | cbpf::MSH)
                    && constant_load_fails(insn) => {}
            _ => todo.push(next(0)?),
        }
    }
    Ok(seen)
}

/// Translates a classic program into the body of the eBPF function described in the module
/// documentation.
pub fn translate(prog: &[cbpf::Insn]) -> Result<Vec<Insn>, TranslateError> {
    if prog.is_empty() {
        return Err(TranslateError::Empty);
    }
    let live = reachable(prog)?;
    let mut e = Emitter {
        out: Vec::with_capacity(prog.len() * 4),
        fixups: Vec::new(),
        rejects: false,
    };

    // Prologue: registers for the arguments that outlive helper calls, A = X = 0, and the
    // scratch words that are read, zeroed (the verifier refuses reads of unwritten stack).
    e.push(Insn::alu64_reg(ebpf::MOV, R6, R1));
    e.push(Insn::alu32_reg(ebpf::MOV, R7, R2));
    let used = |class: u16, mode: u16| {
        prog.iter()
            .zip(&live)
            .any(|(insn, &live)| live && insn.class() == class && insn.code & 0xe0 == mode)
    };
    if used(cbpf::LD, cbpf::LEN) || used(cbpf::LDX, cbpf::LEN) {
        e.push(Insn::store_reg(ebpf::W, R10, WIRELEN, R3));
    }
    let mut scratch_read = [false; cbpf::MEMWORDS as usize];
    for (pc, insn) in prog.iter().enumerate().filter(|(pc, _)| live[*pc]) {
        let is_read = matches!(insn.class(), cbpf::LD | cbpf::LDX) && insn.code & 0xe0 == cbpf::MEM;
        let is_write = matches!(insn.class(), cbpf::ST | cbpf::STX);
        if is_read || is_write {
            if insn.k >= cbpf::MEMWORDS {
                return Err(TranslateError::BadScratch { pc, index: insn.k });
            }
            if is_read {
                scratch_read[insn.k as usize] = true;
            }
        }
    }
    for (index, _) in scratch_read.iter().enumerate().filter(|(_, read)| **read) {
        e.push(Insn::store_imm(ebpf::W, R10, mem_slot(index as u32), 0));
    }
    e.push(Insn::alu32_imm(ebpf::MOV, R8, 0));
    e.push(Insn::alu32_imm(ebpf::MOV, R9, 0));

    let mut position = vec![usize::MAX; prog.len()];
    for (pc, &insn) in prog.iter().enumerate() {
        if !live[pc] {
            continue;
        }
        position[pc] = e.out.len();
        let unsupported = TranslateError::Unsupported {
            pc,
            code: insn.code,
        };
        let k = insn.k;
        match insn.class() {
            cbpf::LD | cbpf::LDX => {
                let dst = if insn.class() == cbpf::LD { R8 } else { R9 };
                let size = insn.load_size();
                match (insn.class(), insn.code & 0xe0, insn.code & 0x18) {
                    (_, cbpf::IMM, cbpf::W) => e.push(Insn::alu32_imm(ebpf::MOV, dst, k as i32)),
                    (_, cbpf::MEM, cbpf::W) => e.push(Insn::load(ebpf::W, dst, R10, mem_slot(k))),
                    (_, cbpf::LEN, cbpf::W) => e.push(Insn::load(ebpf::W, dst, R10, WIRELEN)),
                    (cbpf::LD, cbpf::ABS, _) if constant_load_fails(insn) => {
                        e.jump(Insn::ja(0), Target::Reject)
                    }
                    (cbpf::LD, cbpf::ABS, _) => e.load_packet(R8, size, Some(k)),
                    (cbpf::LD, cbpf::IND, _) => {
                        e.indexed_offset(k);
                        e.load_packet(R8, size, None);
                    }
                    (cbpf::LDX, cbpf::MSH, cbpf::B) if constant_load_fails(insn) => {
                        e.jump(Insn::ja(0), Target::Reject)
                    }
                    (cbpf::LDX, cbpf::MSH, cbpf::B) => {
                        // X = 4 * (P[k] & 0xf): the IPv4 header length.
                        e.load_packet(R9, 1, Some(k));
                        e.push(Insn::alu32_imm(ebpf::AND, R9, 0xf));
                        e.push(Insn::alu32_imm(ebpf::LSH, R9, 2));
                    }
                    _ => return Err(unsupported),
                }
            }
            cbpf::ST => e.push(Insn::store_reg(ebpf::W, R10, mem_slot(k), R8)),
            cbpf::STX => e.push(Insn::store_reg(ebpf::W, R10, mem_slot(k), R9)),
            cbpf::ALU => {
                let op = insn.code & 0xf0;
                let op = match op {
                    cbpf::ADD => ebpf::ADD,
                    cbpf::SUB => ebpf::SUB,
                    cbpf::MUL => ebpf::MUL,
                    cbpf::DIV => ebpf::DIV,
                    cbpf::OR => ebpf::OR,
                    cbpf::AND => ebpf::AND,
                    cbpf::LSH => ebpf::LSH,
                    cbpf::RSH => ebpf::RSH,
                    cbpf::NEG => ebpf::NEG,
                    cbpf::MOD => ebpf::MOD,
                    cbpf::XOR => ebpf::XOR,
                    _ => return Err(unsupported),
                };
                if op == ebpf::NEG {
                    e.push(Insn::alu32_imm(ebpf::NEG, R8, 0));
                } else if insn.code & cbpf::X != 0 {
                    if matches!(op, ebpf::DIV | ebpf::MOD) {
                        e.jump(Insn::jmp32_imm(ebpf::JEQ, R9, 0, 0), Target::Reject);
                    }
                    e.push(Insn::alu32_reg(op, R8, R9));
                    if matches!(op, ebpf::LSH | ebpf::RSH) {
                        // eBPF masks the shift amount to five bits; classic BPF (libpcap's
                        // interpreter) shifts everything out when X >= 32.
                        e.push(Insn::jmp32_imm(ebpf::JLT, R9, 32, 1));
                        e.push(Insn::alu32_imm(ebpf::MOV, R8, 0));
                    }
                } else {
                    if matches!(op, ebpf::DIV | ebpf::MOD) && k == 0 {
                        return Err(TranslateError::DivisionByZero { pc });
                    }
                    if matches!(op, ebpf::LSH | ebpf::RSH) && k >= 32 {
                        // libpcap refuses such constants; the verifier refuses them too. Same
                        // result as a register shift of 32 or more.
                        e.push(Insn::alu32_imm(ebpf::MOV, R8, 0));
                    } else {
                        e.push(Insn::alu32_imm(op, R8, k as i32));
                    }
                }
            }
            cbpf::JMP => {
                let op = insn.code & 0xf0;
                if op == cbpf::JA {
                    let target = pc + 1 + k as usize;
                    if target != pc + 1 {
                        e.jump(Insn::ja(0), Target::Classic(target));
                    }
                    continue;
                }
                let (when_true, when_false) =
                    (pc + 1 + insn.jt as usize, pc + 1 + insn.jf as usize);
                let by_x = insn.code & cbpf::X != 0;
                let compare = |op: u8| {
                    if by_x {
                        Insn::jmp32_reg(op, R8, R9, 0)
                    } else {
                        Insn::jmp32_imm(op, R8, k as i32, 0)
                    }
                };
                let (op, inverse) = match op {
                    cbpf::JEQ => (ebpf::JEQ, Some(ebpf::JNE)),
                    cbpf::JGT => (ebpf::JGT, Some(ebpf::JLE)),
                    cbpf::JGE => (ebpf::JGE, Some(ebpf::JLT)),
                    cbpf::JSET => (ebpf::JSET, None),
                    _ => return Err(unsupported),
                };
                if when_true == when_false {
                    if when_true != pc + 1 {
                        e.jump(Insn::ja(0), Target::Classic(when_true));
                    }
                } else if let (true, Some(inverse)) = (when_true == pc + 1, inverse) {
                    // Falls through when true: branch on the opposite condition.
                    e.jump(compare(inverse), Target::Classic(when_false));
                } else {
                    e.jump(compare(op), Target::Classic(when_true));
                    if when_false != pc + 1 {
                        e.jump(Insn::ja(0), Target::Classic(when_false));
                    }
                }
            }
            cbpf::RET => {
                match insn.code & 0x18 {
                    cbpf::K => e.push(Insn::alu32_imm(ebpf::MOV, R0, k as i32)),
                    cbpf::RET_A => e.push(Insn::alu32_reg(ebpf::MOV, R0, R8)),
                    cbpf::X => e.push(Insn::alu32_reg(ebpf::MOV, R0, R9)),
                    _ => return Err(unsupported),
                }
                e.push(Insn::exit());
            }
            cbpf::MISC => match insn.code & 0xf8 {
                cbpf::TAX => e.push(Insn::alu32_reg(ebpf::MOV, R9, R8)),
                cbpf::TXA => e.push(Insn::alu32_reg(ebpf::MOV, R8, R9)),
                _ => return Err(unsupported),
            },
            _ => return Err(unsupported),
        }
        // A live instruction that falls through into the next one must have a next one.
        let falls_through = !matches!(insn.class(), cbpf::RET | cbpf::JMP);
        if falls_through && pc + 1 >= prog.len() {
            return Err(TranslateError::OutOfRange { pc });
        }
    }

    let reject_at = e.out.len();
    if e.rejects {
        e.push(Insn::alu32_imm(ebpf::MOV, R0, 0));
        e.push(Insn::exit());
    }
    if e.out.len() > i16::MAX as usize {
        return Err(TranslateError::TooLarge { insns: e.out.len() });
    }
    for (at, target) in std::mem::take(&mut e.fixups) {
        let to = match target {
            Target::Classic(pc) => position[pc],
            Target::Reject => reject_at,
        };
        debug_assert!(
            to > at && to != usize::MAX,
            "forward jump to an emitted instruction"
        );
        e.out[at].off = (to - at - 1) as i16;
    }
    Ok(e.out)
}

/// A function that rejects every packet: the L3 variant of an expression that only makes
/// sense with a link-layer header.
pub fn reject_all() -> Vec<Insn> {
    vec![Insn::alu32_imm(ebpf::MOV, R0, 0), Insn::exit()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(code: u16, k: u32) -> cbpf::Insn {
        cbpf::Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    #[test]
    fn backward_jump_is_refused_with_its_position() {
        let prog = [
            stmt(cbpf::LD | cbpf::IMM, 1),
            stmt(cbpf::JMP | cbpf::JA, u32::MAX),
        ];
        assert_eq!(
            translate(&prog),
            Err(TranslateError::BackwardJump { pc: 1 })
        );
    }

    #[test]
    fn running_off_the_end_is_refused() {
        let prog = [stmt(cbpf::LD | cbpf::IMM, 1)];
        assert_eq!(translate(&prog), Err(TranslateError::OutOfRange { pc: 0 }));
        let prog = [stmt(cbpf::JMP | cbpf::JA, 5), stmt(cbpf::RET, 0)];
        assert_eq!(translate(&prog), Err(TranslateError::OutOfRange { pc: 0 }));
    }

    #[test]
    fn unreachable_code_is_not_emitted() {
        let prog = [
            stmt(cbpf::JMP | cbpf::JA, 1),
            stmt(cbpf::LD | cbpf::ABS | cbpf::W, 0),
            stmt(cbpf::RET, 7),
        ];
        let out = translate(&prog).unwrap();
        // Prologue (4), then `mov r0, 7; exit`: no load, no reject block.
        assert!(
            !out.iter().any(|i| i.code == ebpf::JMP | ebpf::CALL),
            "{out:?}"
        );
        assert_eq!(out[out.len() - 2], Insn::alu32_imm(ebpf::MOV, R0, 7));
    }

    #[test]
    fn scratch_index_is_checked() {
        let prog = [stmt(cbpf::ST, 16), stmt(cbpf::RET, 0)];
        assert_eq!(
            translate(&prog),
            Err(TranslateError::BadScratch { pc: 0, index: 16 })
        );
    }
}
