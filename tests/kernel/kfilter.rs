//! The kernel verifier's view of translated packet filters: every expression of
//! `tests/fixtures/filters.txt` (the differential test's corpus), both variants, called as a BPF
//! function from a raw_tp program the way the probes call it, with the data pointer, caplen and
//! wirelen as unknown values read from the tracepoint arguments. Loading only, no attachment.

use std::ffi::CString;

use libbpf_rs::libbpf_sys;
use trail::capture::kfilter::{ebpf, Insn, Layer, PacketFilter};

use super::netns::require_root;

fn expressions() -> Vec<String> {
    include_str!("../fixtures/filters.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect()
}

/// `r0 = filter(args[0], args[1], args[2]); exit`, then the filter as a BPF function.
fn wrap(filter: &[Insn]) -> Vec<Insn> {
    const LDX_DW: u8 = 0x79;
    let mut prog = vec![
        Insn::alu64_reg(ebpf::MOV, ebpf::R6, ebpf::R1),
        Insn::new(LDX_DW, ebpf::R1, ebpf::R6, 0, 0),
        Insn::new(LDX_DW, ebpf::R2, ebpf::R6, 8, 0),
        Insn::new(LDX_DW, ebpf::R3, ebpf::R6, 16, 0),
        Insn::call_local(1),
        Insn::exit(),
    ];
    prog.extend_from_slice(filter);
    prog
}

/// Loads `insns` as a raw_tp program; Ok(instructions the verifier processed), or its log.
fn load(insns: &[Insn]) -> Result<u32, String> {
    // u64 slots keep the instructions aligned as `struct bpf_insn` (8 bytes, align 4).
    let words: Vec<u64> = insns
        .iter()
        .map(|insn| u64::from_le_bytes(insn.to_bytes()))
        .collect();
    let mut log = vec![0u8; 1 << 20];
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        // Level 1 on failure (why), stats (level 4) on success (how much work).
        log_level: 1 | 4,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr().cast(),
        ..Default::default()
    };
    let name = CString::new("kfilter_test").unwrap();
    let license = CString::new("GPL").unwrap();
    // SAFETY: `words` holds `insns.len()` instructions in the kernel's layout (8 bytes each,
    // suitably aligned); `opts` is a properly sized bpf_prog_load_opts whose log buffer outlives
    // the call; the strings are NUL-terminated and outlive the call.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT,
            name.as_ptr(),
            license.as_ptr(),
            words.as_ptr().cast(),
            words.len() as _,
            &mut opts,
        )
    };
    let text =
        String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
    if fd < 0 {
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        return Err(format!(
            "errno {}: {}",
            -fd,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    // SAFETY: fd was just returned by bpf_prog_load and is owned by nobody else.
    unsafe { libc::close(fd) };
    let processed = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("processed ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Ok(processed)
}

#[test]
fn verifier_accepts_every_translated_filter() {
    if !require_root("verifier_accepts_every_translated_filter") {
        return;
    }
    let mut failures = Vec::new();
    let mut loaded = 0usize;
    let mut largest = (0usize, String::new());
    let mut most_processed = (0u32, String::new());
    for expr in expressions() {
        let filter = PacketFilter::new(&expr).unwrap_or_else(|e| panic!("{e}"));
        for layer in [Layer::L2, Layer::L3] {
            let body = filter.variant(layer);
            match load(&wrap(body)) {
                Ok(processed) => {
                    loaded += 1;
                    if body.len() > largest.0 {
                        largest = (body.len(), expr.clone());
                    }
                    if processed > most_processed.0 {
                        most_processed = (processed, expr.clone());
                    }
                }
                Err(log) => failures.push(format!("{expr:?} ({layer}): {log}")),
            }
        }
    }
    eprintln!(
        "kfilter verifier: {loaded} of {} variants loaded; largest {} insns ({:?}); most \
         verifier work {} insns processed ({:?})",
        loaded + failures.len(),
        largest.0,
        largest.1,
        most_processed.0,
        most_processed.1
    );
    assert!(
        failures.is_empty(),
        "{} variants refused:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
}

#[test]
fn verifier_accepts_a_large_filter() {
    if !require_root("verifier_accepts_a_large_filter") {
        return;
    }
    // Many independent branches, each with its own loads: the verifier's path count grows.
    let expr = (1..=60)
        .map(|n| format!("(udp port {n} and ip[8] > {n}) or tcp[{n}] = {n}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let filter = PacketFilter::new(&expr).unwrap_or_else(|e| panic!("{e}"));
    for layer in [Layer::L2, Layer::L3] {
        let body = filter.variant(layer);
        let processed = load(&wrap(body)).unwrap_or_else(|log| panic!("{layer}: {log}"));
        eprintln!(
            "kfilter large filter ({layer}): {} insns, {processed} processed",
            body.len()
        );
    }
}

#[test]
fn verifier_refuses_a_direct_packet_read() {
    if !require_root("verifier_refuses_a_direct_packet_read") {
        return;
    }
    // The control for the tests above: what the translator must never emit, a load through
    // the data pointer without bpf_probe_read_kernel, is refused by this harness.
    let body = [Insn::load(ebpf::B, ebpf::R0, ebpf::R1, 0), Insn::exit()];
    let err = load(&wrap(&body)).expect_err("direct read of the data pointer was accepted");
    assert!(err.contains("R1"), "{err}");
}
