//! Which program of `bpf/capture.bpf.c` serves each probe, extra object instances where the
//! probe identity cannot be a cookie, and attaching everything.
//!
//! Contract:
//! - The first ("primary") object holds every map; it loads the programs whose attachments
//!   carry the probe id as a BPF cookie (raw tracepoints on 6.10+, kprobes, kprobe-multi).
//! - An instance is one more open+load of the same object for one probe, every map shared with
//!   the primary (`reuse_fd`, so events, counters and tracking are one), and the probe id in its
//!   rodata `fixed_probe`. Used for fentry/fexit and tp_btf (the target is fixed at load), and
//!   raw tracepoints on kernels without raw_tp cookies (before 6.10).
//! - Tracepoints load as tp_btf programs where the kernel lets those read paged skb data
//!   (`Features::paged_tracepoints`), else as raw_tp programs (linear data only).
//! - kprobe-multi is tried first where the kernel has it; if the multi link fails, the same
//!   probes are attached one by one through a fallback instance of single-kprobe programs.
//! - Probes from a wildcard that fail to attach are skipped with a warning; any other failure
//!   is an error. Links live in the returned vector only: dropping it detaches everything.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{KprobeMultiOpts, KprobeOpts, Link, MapCore, OpenObject, RawTracepointOpts};

use super::bpf::{CaptureSkel, CaptureSkelBuilder, OpenCaptureSkel};
use super::functions::Features;
use super::probe::{Probe, Target};
use crate::model::error::UsageError;
use crate::model::event::ProbeKind;

/// `fixed_probe` when the cookie tells the probe (`TRAIL_NO_PROBE`).
pub const NO_PROBE: u32 = u32::MAX;

/// Where a probe's programs are loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Programs of the primary object, attached with the probe id as cookie.
    Primary(Vec<String>),
    /// One instance with these programs, `fixed_probe` = the probe id.
    Instance(Vec<String>),
}

/// Programs and placement for one probe.
pub fn placement(probe: &Probe, features: &Features) -> anyhow::Result<Placement> {
    let skb = probe.skb().context("probe without an skb argument")?;
    let multi = features.kprobe_multi;
    if probe.is_internal() {
        return Ok(match probe.kind {
            ProbeKind::Kprobe => Placement::Primary(vec![format!("kprobe_track_end_at_{skb}")]),
            _ => Placement::Instance(vec![format!("fentry_track_end_at_{skb}")]),
        });
    }
    Ok(match (&probe.target, probe.kind) {
        (Target::Tracepoint(tp), _) => {
            let name = match tp.drop_reason {
                Some(reason @ 1..=3) if skb == 0 => format!("skb_at_0_reason_at_{reason}"),
                _ if skb <= 5 => format!("skb_at_{skb}"),
                _ => {
                    return Err(UsageError(format!(
                        "tp:{}: its skb is argument {skb}; this build has programs for positions 0 to 5",
                        tp.full_name()
                    ))
                    .into())
                }
            };
            if features.paged_tracepoints.is_ok() {
                Placement::Instance(vec![format!("tp_btf_{name}")])
            } else if features.raw_tp_cookies {
                Placement::Primary(vec![name])
            } else {
                Placement::Instance(vec![name])
            }
        }
        (_, ProbeKind::Kprobe) if multi => Placement::Primary(vec![format!("kmulti_skb_at_{skb}")]),
        (_, ProbeKind::Kprobe) => Placement::Primary(vec![format!("kprobe_skb_at_{skb}")]),
        (_, ProbeKind::Kretprobe) if multi => Placement::Primary(vec![
            format!("kmulti_ret_entry_at_{skb}"),
            "kmulti_ret_skb".into(),
        ]),
        (_, ProbeKind::Kretprobe) => {
            Placement::Primary(vec![format!("kret_entry_at_{skb}"), "kretprobe_skb".into()])
        }
        (_, ProbeKind::Fentry) => Placement::Instance(vec![format!("fentry_skb_at_{skb}")]),
        (_, ProbeKind::Fexit) => {
            Placement::Instance(vec![format!("fexit_entry_at_{skb}"), "fexit_skb".into()])
        }
        (_, kind) => anyhow::bail!("no program for {kind:?} probes"),
    })
}

/// The single-kprobe program standing in for a kprobe-multi one.
fn single_of(multi: &str) -> Option<String> {
    if let Some(rest) = multi.strip_prefix("kmulti_ret_entry_at_") {
        return Some(format!("kret_entry_at_{rest}"));
    }
    if multi == "kmulti_ret_skb" {
        return Some("kretprobe_skb".into());
    }
    multi
        .strip_prefix("kmulti_skb_at_")
        .map(|rest| format!("kprobe_skb_at_{rest}"))
}

/// Opens one more instance of the object, configured by `configure` (the same rodata and map
/// sizes as the primary), maps shared with `primary`, `fixed` as its probe id, loading only
/// `programs` (each with its fentry/fexit target function, if any).
pub fn load_instance<'o>(
    storage: &'o mut MaybeUninit<OpenObject>,
    primary: &CaptureSkel<'_>,
    configure: &Configure<'_>,
    fixed: u32,
    programs: &[(String, Option<String>)],
) -> anyhow::Result<CaptureSkel<'o>> {
    let mut open = CaptureSkelBuilder::default()
        .open(storage)
        .context("cannot open the BPF object")?;
    configure(&mut open)?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .context("BPF object has no rodata")?
        .fixed_probe = fixed;
    for mut map in open.open_object_mut().maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        // Global data sections are per instance (rodata holds `fixed_probe`).
        if name.contains(".rodata") || name.contains(".data") || name.contains(".bss") {
            continue;
        }
        let shared = primary
            .object()
            .maps()
            .find(|m| m.name().to_string_lossy() == name)
            .with_context(|| format!("map {name} missing from the primary object"))?;
        map.reuse_fd(shared.as_fd())
            .with_context(|| format!("cannot share map {name}"))?;
    }
    for mut program in open.open_object_mut().progs_mut() {
        let name = program.name().to_string_lossy().into_owned();
        let wanted = programs.iter().find(|(p, _)| *p == name);
        program.set_autoload(wanted.is_some());
        if let Some((_, Some(function))) = wanted {
            program
                .set_attach_target(0, Some(function.clone()))
                .with_context(|| format!("cannot target {function}"))?;
        }
    }
    open.load().context("cannot load the BPF programs")
}

/// Sets what the primary object and every instance are opened with (rodata, map sizes).
pub type Configure<'a> = dyn Fn(&mut OpenCaptureSkel<'_>) -> anyhow::Result<()> + Sync + 'a;

/// One instance to load: probe id, programs with their targets (see [`load_instance`]), and
/// where the open object lives.
pub type InstanceJob<'o> = (
    u32,
    Vec<(String, Option<String>)>,
    &'o mut MaybeUninit<OpenObject>,
);

/// Loads instances on all CPUs, results in the order of `jobs`. Loading is the verifier's
/// work, about 10-20 ms per program, and each instance is its own load, so startup with many
/// tp_btf or fentry probes scales with the CPUs.
pub fn load_instances<'o>(
    jobs: Vec<InstanceJob<'o>>,
    primary: &CaptureSkel<'_>,
    configure: &Configure<'_>,
) -> Vec<anyhow::Result<CaptureSkel<'o>>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    // Round-robin shares; each worker returns (position, result) pairs.
    let mut shares: Vec<Vec<(usize, InstanceJob<'o>)>> = (0..workers).map(|_| Vec::new()).collect();
    let count = jobs.len();
    for (at, job) in jobs.into_iter().enumerate() {
        shares[at % workers].push((at, job));
    }
    let mut results: Vec<Option<anyhow::Result<CaptureSkel<'o>>>> =
        (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|(at, (id, programs, storage))| {
                            (
                                at,
                                load_instance(storage, primary, configure, id, &programs),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(done) => {
                    for (at, result) in done {
                        results[at] = Some(result);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("instance not loaded"))))
        .collect()
}

/// What attaching did, for `-v` and the event counts.
#[derive(Debug, Default)]
pub struct Report {
    /// Attachments by method (`raw_tp`, `kprobe-multi`, `kprobe`, `fentry`...).
    pub methods: BTreeMap<&'static str, usize>,
    /// Probes skipped because they did not attach (wildcards only).
    pub skipped: Vec<String>,
    /// Whether kprobe-multi failed and single kprobes were used instead.
    pub multi_fallback: Option<String>,
}

/// Attaches every probe. `instances` pairs probe ids with their instance objects;
/// `fallback` loads an instance of single-kprobe programs on demand (kprobe-multi failure).
pub fn attach_all<'o>(
    primary: &CaptureSkel<'_>,
    probes: &[Probe],
    placements: &[Placement],
    instances: &BTreeMap<u32, CaptureSkel<'o>>,
    fallback: &mut dyn FnMut(&[String]) -> anyhow::Result<CaptureSkel<'o>>,
    keep: &mut Vec<CaptureSkel<'o>>,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<(Vec<Link>, Report)> {
    let mut links = Vec::new();
    let mut report = Report::default();
    let find = |skel: &CaptureSkel<'_>, name: &str| {
        skel.object()
            .progs()
            .find(|p| p.name().to_str() == Some(name))
            .map(|_| ())
            .with_context(|| format!("program {name} missing from the BPF object"))
    };
    // kprobe-multi: one link per program, every probe of that program in it.
    let mut multi: BTreeMap<&str, Vec<&Probe>> = BTreeMap::new();
    for (probe, placement) in probes.iter().zip(placements) {
        if let Placement::Primary(programs) = placement {
            for program in programs.iter().filter(|p| p.starts_with("kmulti_")) {
                multi.entry(program.as_str()).or_default().push(probe);
            }
        }
    }
    let mut single_kprobes: Vec<(String, &Probe)> = Vec::new();
    for (program, members) in &multi {
        find(primary, program)?;
        let prog = primary
            .object()
            .progs_mut()
            .find(|p| p.name().to_str() == Some(program))
            .context("program missing")?;
        let opts = KprobeMultiOpts {
            symbols: members.iter().map(|p| p.name()).collect(),
            cookies: members.iter().map(|p| u64::from(p.id)).collect(),
            retprobe: *program == "kmulti_ret_skb",
            ..Default::default()
        };
        match prog.attach_kprobe_multi_with_opts(opts) {
            Ok(link) => {
                links.push(link);
                *report.methods.entry("kprobe-multi").or_default() += members.len();
            }
            Err(err) => {
                report.multi_fallback = Some(format!("{program}: {err}"));
                let single = single_of(program).context("no single-kprobe twin")?;
                single_kprobes.extend(members.iter().map(|p| (single.clone(), *p)));
            }
        }
    }
    let fallback_skel = if single_kprobes.is_empty() {
        None
    } else {
        let names: BTreeSet<String> = single_kprobes.iter().map(|(n, _)| n.clone()).collect();
        keep.push(fallback(&names.into_iter().collect::<Vec<_>>())?);
        keep.last()
    };
    for (probe, placement) in probes.iter().zip(placements) {
        match placement {
            Placement::Primary(programs) => {
                for program in programs.iter().filter(|p| !p.starts_with("kmulti_")) {
                    let result = attach_one(primary, program, probe, true);
                    record(result, probe, &mut links, &mut report, warn)?;
                }
            }
            Placement::Instance(programs) => {
                let Some(skel) = instances.get(&probe.id) else {
                    // A wildcard's probe whose instance did not load: skipped, with a warning.
                    anyhow::ensure!(probe.optional, "instance missing for {}", probe.spec());
                    report.skipped.push(probe.spec());
                    continue;
                };
                for program in programs {
                    let result = attach_one(skel, program, probe, false);
                    record(result, probe, &mut links, &mut report, warn)?;
                }
            }
        }
    }
    if let Some(skel) = fallback_skel {
        for (program, probe) in single_kprobes {
            let result = attach_one(skel, &program, probe, true);
            record(result, probe, &mut links, &mut report, warn)?;
        }
    }
    Ok((links, report))
}

fn record(
    result: anyhow::Result<(Link, &'static str)>,
    probe: &Probe,
    links: &mut Vec<Link>,
    report: &mut Report,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    match result {
        Ok((link, method)) => {
            links.push(link);
            *report.methods.entry(method).or_default() += 1;
            Ok(())
        }
        Err(err) if probe.optional => {
            if !probe.is_internal() {
                warn(format!("skipping {}: {err:#}", probe.spec()));
            }
            report.skipped.push(probe.spec());
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Attaches `program` of `skel` for `probe`; `cookie`: pass the probe id as BPF cookie.
fn attach_one(
    skel: &CaptureSkel<'_>,
    program: &str,
    probe: &Probe,
    cookie: bool,
) -> anyhow::Result<(Link, &'static str)> {
    let prog = skel
        .object()
        .progs_mut()
        .find(|p| p.name().to_str() == Some(program))
        .with_context(|| format!("program {program} missing from the BPF object"))?;
    let id = u64::from(if cookie { probe.id } else { 0 });
    let spec = probe.spec();
    match &probe.target {
        Target::Tracepoint(_) if program.starts_with("tp_btf_") => {
            let link = prog
                .attach_trace()
                .with_context(|| format!("cannot attach {spec} (tp_btf)"))?;
            Ok((link, "tp_btf"))
        }
        Target::Tracepoint(tp) => {
            let link = if cookie {
                prog.attach_raw_tracepoint_with_opts(
                    &tp.name,
                    RawTracepointOpts {
                        cookie: id,
                        ..Default::default()
                    },
                )
            } else {
                prog.attach_raw_tracepoint(&tp.name)
            };
            let link = link.with_context(|| {
                if cookie {
                    format!("cannot attach {spec} (raw tracepoint with a BPF cookie)")
                } else {
                    format!("cannot attach {spec} (raw tracepoint)")
                }
            })?;
            Ok((link, if cookie { "raw_tp" } else { "raw_tp instance" }))
        }
        Target::Function(function) => match program {
            p if p.starts_with("fentry_") || p.starts_with("fexit_") => {
                let link = prog
                    .attach_trace()
                    .with_context(|| format!("cannot attach {spec} (BPF trampoline)"))?;
                let method = match p {
                    "fexit_skb" => "fexit",
                    _ if p.starts_with("fexit_entry") => "fexit entry",
                    _ => "fentry",
                };
                Ok((link, method))
            }
            p => {
                let retprobe = p == "kretprobe_skb";
                let link = prog
                    .attach_kprobe_with_opts(
                        retprobe,
                        &function.name,
                        KprobeOpts {
                            cookie: id,
                            ..Default::default()
                        },
                    )
                    .with_context(|| {
                        format!(
                            "cannot attach {spec} ({})",
                            if retprobe { "kretprobe" } else { "kprobe" }
                        )
                    })?;
                let method = match p {
                    "kretprobe_skb" => "kretprobe",
                    _ if p.starts_with("kret_entry") => "kretprobe entry",
                    _ => "kprobe",
                };
                Ok((link, method))
            }
        },
    }
}
