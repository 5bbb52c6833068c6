//! eBPF instructions as the kernel takes them (Documentation/bpf/standardization/
//! instruction-set.rst): one 64-bit slot per instruction, little-endian fields, and the few
//! constructors the translator needs. Nothing here knows about classic BPF.

use std::fmt;

// Instruction classes.
pub const LDX: u8 = 0x01;
pub const ST: u8 = 0x02;
pub const STX: u8 = 0x03;
pub const ALU: u8 = 0x04;
pub const JMP: u8 = 0x05;
pub const JMP32: u8 = 0x06;
pub const ALU64: u8 = 0x07;

// Source operand: immediate or register.
pub const K: u8 = 0x00;
pub const X: u8 = 0x08;

// Memory access sizes and the one mode we use.
pub const W: u8 = 0x00;
pub const H: u8 = 0x08;
pub const B: u8 = 0x10;
pub const DW: u8 = 0x18;
pub const MEM: u8 = 0x60;

// Arithmetic operations (ALU / ALU64).
pub const ADD: u8 = 0x00;
pub const SUB: u8 = 0x10;
pub const MUL: u8 = 0x20;
pub const DIV: u8 = 0x30;
pub const OR: u8 = 0x40;
pub const AND: u8 = 0x50;
pub const LSH: u8 = 0x60;
pub const RSH: u8 = 0x70;
pub const NEG: u8 = 0x80;
pub const MOD: u8 = 0x90;
pub const XOR: u8 = 0xa0;
pub const MOV: u8 = 0xb0;
pub const END: u8 = 0xd0;
/// With `END`: convert to big-endian (a byte swap on little-endian hosts).
pub const TO_BE: u8 = 0x08;

// Jump operations (JMP / JMP32).
pub const JA: u8 = 0x00;
pub const JEQ: u8 = 0x10;
pub const JGT: u8 = 0x20;
pub const JGE: u8 = 0x30;
pub const JSET: u8 = 0x40;
pub const JNE: u8 = 0x50;
pub const CALL: u8 = 0x80;
pub const EXIT: u8 = 0x90;
pub const JLT: u8 = 0xa0;
pub const JLE: u8 = 0xb0;

/// `long bpf_probe_read_kernel(void *dst, u32 size, const void *unsafe_ptr)`.
pub const HELPER_PROBE_READ_KERNEL: i32 = 113;

/// `src_reg` of a `CALL` to a BPF function in the same program (imm = relative offset).
pub const PSEUDO_CALL: u8 = 1;
/// `lddw`: class LD, mode IMM, size DW.
pub const LD_IMM64: u8 = 0x18;

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R8: u8 = 8;
pub const R9: u8 = 9;
pub const R10: u8 = 10;

/// One eBPF instruction slot (the wide `lddw` takes two: see [`Insn::load_imm64`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The kernel's `struct bpf_insn` layout on a little-endian host (register nibbles:
    /// dst low, src high).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = (self.dst & 0x0f) | (self.src << 4);
        out[2..4].copy_from_slice(&self.off.to_le_bytes());
        out[4..8].copy_from_slice(&self.imm.to_le_bytes());
        out
    }

    /// Inverse of [`Insn::to_bytes`].
    pub fn from_bytes(bytes: [u8; 8]) -> Insn {
        Insn {
            code: bytes[0],
            dst: bytes[1] & 0x0f,
            src: bytes[1] >> 4,
            off: i16::from_le_bytes([bytes[2], bytes[3]]),
            imm: i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }

    pub fn class(self) -> u8 {
        self.code & 0x07
    }

    /// A jump whose `off` is relative to the next instruction (not CALL or EXIT).
    pub fn is_jump(self) -> bool {
        matches!(self.class(), JMP | JMP32) && !matches!(self.code & 0xf0, CALL | EXIT)
    }

    pub const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(ALU | K | op, dst, 0, 0, imm)
    }

    pub const fn alu32_reg(op: u8, dst: u8, src: u8) -> Insn {
        Insn::new(ALU | X | op, dst, src, 0, 0)
    }

    pub const fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(ALU64 | K | op, dst, 0, 0, imm)
    }

    pub const fn alu64_reg(op: u8, dst: u8, src: u8) -> Insn {
        Insn::new(ALU64 | X | op, dst, src, 0, 0)
    }

    /// `dst = be<bits>(dst)`, upper bits cleared.
    pub const fn to_be(dst: u8, bits: i32) -> Insn {
        Insn::new(ALU | TO_BE | END, dst, 0, 0, bits)
    }

    pub const fn load(size: u8, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(LDX | MEM | size, dst, src, off, 0)
    }

    pub const fn store_reg(size: u8, dst: u8, off: i16, src: u8) -> Insn {
        Insn::new(STX | MEM | size, dst, src, off, 0)
    }

    pub const fn store_imm(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
        Insn::new(ST | MEM | size, dst, 0, off, imm)
    }

    /// 64-bit compare with a sign-extended immediate.
    pub const fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(JMP | K | op, dst, 0, off, imm)
    }

    pub const fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(JMP | X | op, dst, src, off, 0)
    }

    /// 32-bit compare: the immediate is taken as 32 bits, no sign extension at play.
    pub const fn jmp32_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(JMP32 | K | op, dst, 0, off, imm)
    }

    pub const fn jmp32_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(JMP32 | X | op, dst, src, off, 0)
    }

    pub const fn ja(off: i16) -> Insn {
        Insn::new(JMP | JA, 0, 0, off, 0)
    }

    pub const fn call_helper(id: i32) -> Insn {
        Insn::new(JMP | CALL, 0, 0, 0, id)
    }

    /// Call of a BPF function `off` instructions after the next one.
    pub const fn call_local(off: i32) -> Insn {
        Insn::new(JMP | CALL, 0, PSEUDO_CALL, 0, off)
    }

    pub const fn exit() -> Insn {
        Insn::new(JMP | EXIT, 0, 0, 0, 0)
    }

    /// `dst = imm` for a 64-bit constant: the wide `lddw`, two instruction slots.
    pub const fn load_imm64(dst: u8, imm: u64) -> [Insn; 2] {
        [
            Insn::new(LD_IMM64, dst, 0, 0, imm as u32 as i32),
            Insn::new(0, 0, 0, 0, (imm >> 32) as u32 as i32),
        ]
    }
}

/// Flat bytes for a loader (`bpf(BPF_PROG_LOAD)`) or an interpreter.
pub fn to_bytes(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|insn| insn.to_bytes()).collect()
}

impl fmt::Display for Insn {
    /// Raw fields, the form `bpftool prog dump xlated opcodes` lists next to its decoding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x} dst=r{} src=r{} off={} imm={}",
            self.code, self.dst, self.src, self.off, self.imm
        )
    }
}
