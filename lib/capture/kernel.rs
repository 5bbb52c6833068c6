//! What trail-capture asks of the running kernel outside BPF: privileges, identity (host,
//! release, clocks), kernel symbols for stacks, and capability probes for error messages.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, BufRead};
use std::path::Path;

use anyhow::{bail, Context};
use libbpf_rs::btf::Btf;
use libbpf_rs::libbpf_sys;

use crate::model::error::UsageError;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Refuses to go on without the capabilities that loading tracing programs needs.
pub fn check_privileges() -> anyhow::Result<()> {
    let status = fs::read_to_string("/proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    Err(UsageError(
        "trail-capture needs root, or the capabilities CAP_BPF and CAP_PERFMON (e.g. `sudo trail-capture`)"
            .into(),
    )
    .into())
}

/// Host name and kernel release (`uname -n`, `uname -r`).
pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it in or fails without touching it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (String::new(), String::new());
    }
    let text = |field: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field within its array.
        unsafe { CStr::from_ptr(field.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    (text(&uts.nodename), text(&uts.release))
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC, read as a tight pair (the smallest gap of a few tries).
pub fn realtime_offset_ns() -> (i64, u64) {
    let mut best = (0i64, i64::MAX, 0u64);
    for _ in 0..5 {
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m2 = clock_ns(libc::CLOCK_MONOTONIC);
        if m2 - m1 < best.1 {
            best = (r - (m1 + (m2 - m1) / 2), m2 - m1, r as u64);
        }
    }
    (best.0, best.2)
}

/// Larger offsets from the nearest symbol are not believed.
const MAX_FUNCTION_SIZE: u64 = 1 << 20;

/// `/proc/kallsyms` function addresses, sorted, for stack symbolization.
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    pub fn load() -> anyhow::Result<Kallsyms> {
        let file = fs::File::open("/proc/kallsyms")?;
        let mut symbols = Vec::new();
        for line in io::BufReader::new(file).lines() {
            let line = line?;
            let mut fields = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr != 0 {
                symbols.push((addr, name.to_string()));
            }
        }
        if symbols.is_empty() {
            bail!("/proc/kallsyms shows no addresses (kernel.kptr_restrict?)");
        }
        symbols.sort_unstable();
        Ok(Kallsyms { symbols })
    }

    /// `symbol+0xoff` for a kernel text address.
    pub fn symbolize(&self, addr: u64) -> Option<String> {
        let at = self.symbols.partition_point(|(a, _)| *a <= addr);
        let (start, name) = self.symbols.get(at.checked_sub(1)?)?;
        // Past the last function (BPF JIT images, modules without symbols): unknown, not the
        // tail of whatever symbol happens to come last.
        if addr - start > MAX_FUNCTION_SIZE {
            return None;
        }
        Some(format!("{name}+{:#x}", addr - start))
    }
}

/// Tries to load a do-nothing fentry program on BTF function `btf_id`: tells whether the kernel
/// accepts BPF trampolines at all (some kernels answer EPERM).
pub fn fentry_loads(btf_id: u32) -> Result<(), io::Error> {
    let mut insns = [insn(0xb7, 0, 0, 0, 0), insn(0x95, 0, 0, 0, 0)]; // r0 = 0; exit
    tracing_program_loads(&mut insns, libbpf_sys::BPF_TRACE_FENTRY, btf_id)
}

/// Tries to load a tp_btf program on tracepoint `trace_typedef` (the BTF id of its
/// `btf_trace_*` typedef, first argument a `struct sk_buff *`) that makes a skb dynptr with
/// kfunc `dynptr_kfunc` (the BTF id of `bpf_dynptr_from_skb`): tells whether tp_btf programs
/// can read paged skb data. The kfunc exists since 6.3; which program types may call it
/// changes across versions, so this is measured, not guessed.
pub fn tp_btf_dynptr_loads(trace_typedef: u32, dynptr_kfunc: u32) -> Result<(), io::Error> {
    const PSEUDO_KFUNC_CALL: u8 = 2;
    let mut insns = [
        insn(0x79, 1, 1, 0, 0),   // r1 = *(u64 *)(r1 + 0): the skb
        insn(0x15, 1, 0, 4, 0),   // if r1 == 0 goto exit
        insn(0xb7, 2, 0, 0, 0),   // r2 = 0 (flags)
        insn(0xbf, 3, 10, 0, 0),  // r3 = r10
        insn(0x07, 3, 0, 0, -16), // r3 += -16: the dynptr
        insn(0x85, 0, PSEUDO_KFUNC_CALL, 0, dynptr_kfunc as i32), // call bpf_dynptr_from_skb
        insn(0xb7, 0, 0, 0, 0),   // exit: r0 = 0
        insn(0x95, 0, 0, 0, 0),
    ];
    tracing_program_loads(&mut insns, libbpf_sys::BPF_TRACE_RAW_TP, trace_typedef)
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> libbpf_sys::bpf_insn {
    let mut insn = libbpf_sys::bpf_insn {
        code,
        off,
        imm,
        ..Default::default()
    };
    insn.set_dst_reg(dst);
    insn.set_src_reg(src);
    insn
}

/// Loads `insns` as a BPF_PROG_TYPE_TRACING program of `attach_type` on BTF id `btf_id`, and
/// closes it: Ok when the kernel accepts it.
fn tracing_program_loads(
    insns: &mut [libbpf_sys::bpf_insn],
    attach_type: libbpf_sys::bpf_attach_type,
    btf_id: u32,
) -> Result<(), io::Error> {
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: attach_type,
        attach_btf_id: btf_id,
        ..Default::default()
    };
    // SAFETY: all pointers are valid for the call; `insns` holds `insns.len()` instructions.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            c"trail_probe".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: `fd` is a program fd we own and close once.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Runs `f` on the tracefs directory. Mounts tracefs on a private temporary directory when it
/// is not mounted anywhere (and unmounts it), so the host's mounts are left as they were.
pub fn with_tracefs<T>(f: impl FnOnce(&Path) -> anyhow::Result<T>) -> anyhow::Result<T> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return f(Path::new(dir));
        }
    }
    let temp = tempfile::Builder::new()
        .prefix("trail-tracefs-")
        .tempdir()?;
    let target = CString::new(temp.path().as_os_str().as_encoded_bytes())?;
    let fstype = CString::new("tracefs")?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!("cannot mount tracefs: {}", std::io::Error::last_os_error());
    }
    let result = f(temp.path());
    // SAFETY: `target` is a valid NUL-terminated path we mounted above.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    result
}

/// The `btf` file this module reads (for error messages and the BTF check).
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Opens the kernel BTF, with a clear error when the kernel has none.
pub fn kernel_btf() -> anyhow::Result<Btf<'static>> {
    if !Path::new(VMLINUX_BTF).exists() {
        bail!("this kernel has no BTF ({VMLINUX_BTF} is missing; CONFIG_DEBUG_INFO_BTF is needed)");
    }
    Btf::from_vmlinux().with_context(|| format!("cannot read the kernel BTF at {VMLINUX_BTF}"))
}
