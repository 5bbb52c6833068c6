//! Puts the user's filters into the probe programs when libbpf loads them.
//!
//! `bpf/capture.bpf.c` calls three placeholder BPF functions (`trail_filter_l2`,
//! `trail_filter_l3`, `trail_meta`). At load time, after libbpf has relocated a program and
//! appended its subprograms, our `prog_prepare_load_fn` callback replaces each placeholder's body
//! with the translated filter (a BPF function with the same signature), then shifts what the
//! change of length moves: the immediates of BPF-to-BPF calls that cross the body, and the
//! instruction offsets of the BTF func and line info. The placeholders keep their BTF func info,
//! so the verifier sees an ordinary static subprogram.
//!
//! Why a load-time callback: before load, a program does not contain its subprograms yet, and
//! libbpf offers no access to `.text`; a new function appended by hand would lack BTF func info,
//! which the kernel requires of every subprogram once any is given.
//!
//! The callback is registered with `libbpf_register_prog_handler` for the section names the
//! object uses (custom handlers take precedence over libbpf's own). Registration is global to
//! the process and done once; the bodies to splice live in a global set by [`install`] before
//! the object is loaded and cleared by [`clear`] after.

use std::collections::HashMap;
use std::ffi::{c_int, c_long, CString};
use std::sync::{Mutex, OnceLock};

use libbpf_rs::libbpf_sys;

use crate::capture::kfilter::ebpf::{self, Insn, LD_IMM64};

/// One BTF func info record: where a function starts and its BTF type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    pub insn_off: u32,
    pub type_id: u32,
}

/// The result of [`splice`].
#[derive(Debug, PartialEq, Eq)]
pub struct Spliced {
    pub insns: Vec<Insn>,
    pub funcs: Vec<FuncInfo>,
    /// Line info records (raw, `rec_size` bytes each, `insn_off` first), shifted.
    pub lines: Vec<u8>,
}

/// Why a program could not take its filters.
#[derive(Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// A call whose target is inside a replaced body (a placeholder's own code), which the
    /// replacement removes.
    CallIntoBody { at: usize },
    /// A BPF-to-BPF call offset or instruction count no longer fits its field.
    TooLarge,
}

const PSEUDO_FUNC: u8 = 4;

/// Replaces the bodies of the functions whose BTF type id has an entry in `bodies`.
/// `insns` is a whole program (main function then subprograms), `funcs` its func info sorted
/// by offset, `lines` its line info (records of `line_rec_size` bytes whose first field is the
/// `u32` instruction offset).
pub fn splice(
    insns: &[Insn],
    funcs: &[FuncInfo],
    lines: &[u8],
    line_rec_size: usize,
    bodies: &HashMap<u32, Vec<Insn>>,
) -> Result<Spliced, SpliceError> {
    // Replaced regions: [start, end) in old indices, with their new bodies.
    let mut regions: Vec<(usize, usize, &[Insn])> = Vec::new();
    for (i, func) in funcs.iter().enumerate() {
        if let Some(body) = bodies.get(&func.type_id) {
            let start = func.insn_off as usize;
            let end = funcs
                .get(i + 1)
                .map_or(insns.len(), |next| next.insn_off as usize);
            regions.push((start, end.min(insns.len()), body));
        }
    }
    // new_index[old] for every old instruction outside a region, and for region starts.
    let mut new_index = vec![usize::MAX; insns.len() + 1];
    let mut out: Vec<Insn> = Vec::with_capacity(insns.len());
    let mut from_old: Vec<Option<usize>> = Vec::with_capacity(insns.len());
    let mut old = 0;
    for &(start, end, body) in &regions {
        while old < start {
            new_index[old] = out.len();
            out.push(insns[old]);
            from_old.push(Some(old));
            old += 1;
        }
        new_index[start] = out.len();
        out.extend_from_slice(body);
        from_old.extend(std::iter::repeat_n(None, body.len()));
        old = end;
    }
    while old < insns.len() {
        new_index[old] = out.len();
        out.push(insns[old]);
        from_old.push(Some(old));
        old += 1;
    }
    new_index[insns.len()] = out.len();
    if out.len() > i32::MAX as usize {
        return Err(SpliceError::TooLarge);
    }

    // Calls between functions: relative immediates, re-aimed at the target's new position.
    for (at, origin) in from_old.iter().enumerate() {
        let Some(old_at) = *origin else { continue };
        let insn = out[at];
        let is_call = insn.code == ebpf::JMP | ebpf::CALL && insn.src == ebpf::PSEUDO_CALL;
        let is_func_ref = insn.code == LD_IMM64 && insn.src == PSEUDO_FUNC;
        if !(is_call || is_func_ref) {
            continue;
        }
        let old_target = old_at as i64 + i64::from(insn.imm) + 1;
        let target = usize::try_from(old_target)
            .ok()
            .and_then(|t| new_index.get(t).copied())
            .filter(|&t| t != usize::MAX)
            .ok_or(SpliceError::CallIntoBody { at: old_at })?;
        out[at].imm =
            i32::try_from(target as i64 - at as i64 - 1).map_err(|_| SpliceError::TooLarge)?;
    }

    let funcs = funcs
        .iter()
        .map(|f| FuncInfo {
            insn_off: new_index[f.insn_off as usize] as u32,
            type_id: f.type_id,
        })
        .collect();

    // Line info: records outside the regions move with their instruction; inside a region
    // only one stays, at the body's start (the kernel wants one where each function starts).
    let mut new_lines = Vec::with_capacity(lines.len());
    let mut region_has_line = vec![false; regions.len()];
    for record in lines.chunks_exact(line_rec_size.max(4)) {
        let off = u32::from_ne_bytes(record[..4].try_into().unwrap()) as usize;
        let (new_off, keep) = match regions.iter().position(|&(s, e, _)| off >= s && off < e) {
            Some(r) => (
                new_index[regions[r].0],
                !std::mem::replace(&mut region_has_line[r], true),
            ),
            None => (new_index.get(off).copied().unwrap_or(usize::MAX), true),
        };
        if keep && new_off != usize::MAX {
            new_lines.extend_from_slice(&(new_off as u32).to_ne_bytes());
            new_lines.extend_from_slice(&record[4..]);
        }
    }
    Ok(Spliced {
        insns: out,
        funcs,
        lines: new_lines,
    })
}

/// What the callback splices, and the buffers it hands to libbpf (which must outlive the
/// load: they are kept until the next [`install`] or [`clear`]).
struct State {
    bodies: HashMap<u32, Vec<Insn>>,
    keep: Vec<Box<[u8]>>,
    error: Option<String>,
    /// Programs that received the bodies: a program loaded without passing through the
    /// callback would keep placeholders that accept everything, so the caller checks this.
    spliced: usize,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Section names of `bpf/capture.bpf.c` programs and their program and attach types, as
/// libbpf's own handlers define them.
const SECTIONS: &[(&str, libbpf_sys::bpf_prog_type, libbpf_sys::bpf_attach_type)] = &[
    ("raw_tp", libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT, 0),
    (
        "tp_btf",
        libbpf_sys::BPF_PROG_TYPE_TRACING,
        libbpf_sys::BPF_TRACE_RAW_TP,
    ),
    ("kprobe", libbpf_sys::BPF_PROG_TYPE_KPROBE, 0),
    ("kretprobe", libbpf_sys::BPF_PROG_TYPE_KPROBE, 0),
    (
        "kprobe.multi",
        libbpf_sys::BPF_PROG_TYPE_KPROBE,
        libbpf_sys::BPF_TRACE_KPROBE_MULTI,
    ),
    (
        "kretprobe.multi",
        libbpf_sys::BPF_PROG_TYPE_KPROBE,
        libbpf_sys::BPF_TRACE_KPROBE_MULTI,
    ),
    (
        "fentry",
        libbpf_sys::BPF_PROG_TYPE_TRACING,
        libbpf_sys::BPF_TRACE_FENTRY,
    ),
    (
        "fexit",
        libbpf_sys::BPF_PROG_TYPE_TRACING,
        libbpf_sys::BPF_TRACE_FEXIT,
    ),
];

/// Registers the load callback for our section names, once per process. Must run before the
/// object is opened (libbpf picks a program's handler at open).
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for &(sec, prog_type, attach_type) in SECTIONS {
                let opts = libbpf_sys::libbpf_prog_handler_opts {
                    sz: std::mem::size_of::<libbpf_sys::libbpf_prog_handler_opts>() as _,
                    cookie: 0,
                    prog_setup_fn: None,
                    prog_prepare_load_fn: Some(prepare_load),
                    prog_attach_fn: None,
                };
                let name = CString::new(sec).expect("section names have no NUL");
                // SAFETY: `name` is NUL-terminated and libbpf copies it (strdup); `opts` is a
                // properly sized, initialised options struct that libbpf reads during the call.
                let rc = unsafe {
                    libbpf_sys::libbpf_register_prog_handler(
                        name.as_ptr(),
                        prog_type,
                        attach_type,
                        &opts,
                    )
                };
                if rc < 0 {
                    return Err(format!(
                        "cannot register the BPF load handler for section {sec}: {}",
                        std::io::Error::from_raw_os_error(-rc)
                    ));
                }
            }
            Ok(())
        })
        .clone()
}

/// Sets the bodies to splice, by BTF type id of the placeholder function.
pub fn install(bodies: HashMap<u32, Vec<Insn>>) {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        bodies,
        keep: Vec::new(),
        error: None,
        spliced: 0,
    });
}

/// Forgets the bodies and frees the buffers. Returns how many programs received them, or the
/// first error the callback met.
pub fn clear() -> Result<usize, String> {
    match STATE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(State {
            error: Some(error), ..
        }) => Err(error),
        Some(state) => Ok(state.spliced),
        None => Ok(0),
    }
}

extern "C" fn prepare_load(
    prog: *mut libbpf_sys::bpf_program,
    opts: *mut libbpf_sys::bpf_prog_load_opts,
    _cookie: c_long,
) -> c_int {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(state) = guard.as_mut() else {
        return 0;
    };
    if state.bodies.is_empty() {
        return 0;
    }
    // SAFETY: libbpf calls this with a valid program and the load options it is about to use;
    // both stay valid for the duration of the call, and nothing else touches them meanwhile.
    let (prog, opts) = unsafe { (&mut *prog, &mut *opts) };
    match splice_program(prog, opts, state) {
        Ok(()) => 0,
        Err(message) => {
            state.error.get_or_insert(message);
            -libc::EINVAL
        }
    }
}

fn splice_program(
    prog: &mut libbpf_sys::bpf_program,
    opts: &mut libbpf_sys::bpf_prog_load_opts,
    state: &mut State,
) -> Result<(), String> {
    let func_rec = opts.func_info_rec_size as usize;
    if opts.func_info.is_null() || opts.func_info_cnt == 0 || func_rec < 8 {
        return Err("the kernel did not take BTF func info, which filters need".into());
    }
    // SAFETY: libbpf owns these arrays for the program's lifetime; the counts and record sizes
    // come from the same load options, and instructions are 8-byte `struct bpf_insn`s.
    let (raw_insns, raw_funcs, raw_lines) = unsafe {
        let insns = libbpf_sys::bpf_program__insns(prog);
        let count = libbpf_sys::bpf_program__insn_cnt(prog) as usize;
        let insns = std::slice::from_raw_parts(insns.cast::<u8>(), count * 8);
        let funcs = std::slice::from_raw_parts(
            opts.func_info.cast::<u8>(),
            func_rec * opts.func_info_cnt as usize,
        );
        let lines = if opts.line_info.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(
                opts.line_info.cast::<u8>(),
                opts.line_info_rec_size as usize * opts.line_info_cnt as usize,
            )
        };
        (insns, funcs, lines)
    };
    let insns: Vec<Insn> = raw_insns
        .chunks_exact(8)
        .map(|c| Insn::from_bytes(c.try_into().unwrap()))
        .collect();
    let funcs: Vec<FuncInfo> = raw_funcs
        .chunks_exact(func_rec)
        .map(|r| FuncInfo {
            insn_off: u32::from_ne_bytes(r[0..4].try_into().unwrap()),
            type_id: u32::from_ne_bytes(r[4..8].try_into().unwrap()),
        })
        .collect();
    if !funcs.iter().any(|f| state.bodies.contains_key(&f.type_id)) {
        return Ok(());
    }
    let spliced = splice(
        &insns,
        &funcs,
        raw_lines,
        opts.line_info_rec_size as usize,
        &state.bodies,
    )
    .map_err(|e| format!("cannot place the filters in the probe program: {e:?}"))?;

    let bytes: Vec<u8> = spliced.insns.iter().flat_map(|i| i.to_bytes()).collect();
    // SAFETY: `bytes` holds whole 8-byte instructions; libbpf copies them (set_insns reallocs
    // its own array), and the program is not loaded yet.
    let rc = unsafe {
        libbpf_sys::bpf_program__set_insns(
            prog,
            bytes.as_ptr() as *mut libbpf_sys::bpf_insn,
            spliced.insns.len() as _,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot set the program's instructions (error {rc})"
        ));
    }
    // Func info in the kernel's record size (extra bytes of larger records copied as they were).
    let mut func_bytes = raw_funcs.to_vec();
    for (record, func) in func_bytes.chunks_exact_mut(func_rec).zip(&spliced.funcs) {
        record[0..4].copy_from_slice(&func.insn_off.to_ne_bytes());
    }
    let func_bytes = func_bytes.into_boxed_slice();
    let line_bytes = spliced.lines.into_boxed_slice();
    opts.func_info = func_bytes.as_ptr().cast();
    if !opts.line_info.is_null() && opts.line_info_rec_size > 0 {
        opts.line_info_cnt = (line_bytes.len() / opts.line_info_rec_size as usize) as u32;
        opts.line_info = line_bytes.as_ptr().cast();
    }
    state.keep.push(func_bytes);
    state.keep.push(line_bytes);
    state.spliced += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(imm: i32) -> Insn {
        Insn::new(ebpf::JMP | ebpf::CALL, 0, ebpf::PSEUDO_CALL, 0, imm)
    }
    fn mov(k: i32) -> Insn {
        Insn::alu32_imm(ebpf::MOV, 0, k)
    }
    /// Func info records from (instruction offset, BTF type id) pairs.
    fn funcs(pairs: &[(u32, u32)]) -> Vec<FuncInfo> {
        pairs
            .iter()
            .map(|&(insn_off, type_id)| FuncInfo { insn_off, type_id })
            .collect()
    }
    fn line(off: u32, tag: u32) -> Vec<u8> {
        let mut v = off.to_ne_bytes().to_vec();
        v.extend_from_slice(&tag.to_ne_bytes());
        v
    }

    #[test]
    fn replaces_a_body_and_reaims_calls_across_it() {
        // main: call f (at 3), call g (at 5), exit; f: 2 insns (placeholder); g: 1 insn.
        let insns = vec![
            call(2),      // 0 -> 3
            call(3),      // 1 -> 5
            Insn::exit(), // 2
            mov(1),       // 3 f
            Insn::exit(), // 4
            mov(7),       // 5 g
            Insn::exit(), // 6
        ];
        let funcs = funcs(&[(0, 10), (3, 11), (5, 12)]);
        let lines: Vec<u8> = [line(0, 100), line(3, 101), line(4, 102), line(5, 103)].concat();
        let body = vec![mov(2), mov(3), mov(4), Insn::exit()];
        let bodies = HashMap::from([(11, body.clone())]);
        let out = splice(&insns, &funcs, &lines, 8, &bodies).unwrap();
        assert_eq!(&out.insns[3..7], &body[..]);
        assert_eq!(out.insns[0].imm, 2, "call f still lands on f");
        assert_eq!(out.insns[1].imm, 5, "call g lands on g's new place");
        assert_eq!(out.insns[7], mov(7));
        assert_eq!(
            out.funcs.iter().map(|f| f.insn_off).collect::<Vec<_>>(),
            [0, 3, 7]
        );
        let expected: Vec<u8> = [line(0, 100), line(3, 101), line(7, 103)].concat();
        assert_eq!(out.lines, expected);
    }

    #[test]
    fn untouched_without_bodies() {
        let insns = vec![call(1), Insn::exit(), mov(1), Insn::exit()];
        let funcs = funcs(&[(0, 1), (2, 2)]);
        let out = splice(&insns, &funcs, &[], 8, &HashMap::new()).unwrap();
        assert_eq!(out.insns, insns);
    }

    #[test]
    fn a_call_into_a_replaced_body_is_refused() {
        let insns = vec![call(3), Insn::exit(), mov(1), mov(1), Insn::exit()];
        let funcs = funcs(&[(0, 1), (2, 2)]);
        let bodies = HashMap::from([(2, vec![mov(0), Insn::exit()])]);
        assert_eq!(
            splice(&insns, &funcs, &[], 8, &bodies),
            Err(SpliceError::CallIntoBody { at: 0 })
        );
    }
}
