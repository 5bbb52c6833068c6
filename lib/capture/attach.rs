//! Phase 3 of a capture, attach: every probe's programs to its target, then the tracking
//! settings that depend on what attached.
//!
//! Contract:
//! - Programs of the primary object attach with the probe id as BPF cookie (raw tracepoints on
//!   6.10+, kprobes, kprobe-multi); instances attach as they are (their rodata names the
//!   probe).
//! - kprobe-multi is tried first where the kernel has it; if the multi link fails, the same
//!   probes are attached one by one through a fallback instance of single-kprobe programs,
//!   kept in [`Loaded::kept`].
//! - Probes from a wildcard that fail to attach are skipped with a warning; any other failure
//!   is an error. Links live in [`Attached::links`] only: dropping them detaches everything.
//! - After attaching, the filter bodies installed for splicing are cleared (an error if none
//!   was placed), and tracking trusts known heads only when every head-freeing end point
//!   attached.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use libbpf_rs::skel::Skel;
use libbpf_rs::{KprobeMultiOpts, KprobeOpts, Link, MapCore, MapFlags, RawTracepointOpts};

use super::bpf::{types, CaptureSkel};
use super::load::{self, Loaded};
use super::plan::{ObjectConfig, Placement, Plan};
use super::probe::{Probe, Target};
use super::splice;

/// What the attach phase leaves running.
pub struct Attached {
    /// Dropping these detaches every probe.
    pub links: Vec<Link>,
    pub report: Report,
    /// Whether tracking trusts known heads (every head-freeing end point attached).
    pub trusted: bool,
}

/// Attaches every probe of `plan` to the objects of `loaded`.
pub fn attach(
    loaded: &mut Loaded<'_>,
    plan: &Plan,
    config: &ObjectConfig,
) -> anyhow::Result<Attached> {
    let Loaded {
        kept,
        instances,
        primary,
        spare,
        splicing,
        ..
    } = loaded;
    let primary = &*primary;
    let mut fallback = |names: &[String]| {
        let storage = spare.take().context("kprobe fallback used twice")?;
        let programs: Vec<(String, Option<String>)> =
            names.iter().map(|n| (n.clone(), None)).collect();
        load::load_instance(storage, primary, config, None, &programs)
    };
    let (links, report) = attach_all(
        primary,
        &plan.probes,
        &plan.placements,
        instances,
        &mut fallback,
        kept,
        &mut |warning| eprintln!("trail-capture: warning: {warning}"),
    )?;
    match splice::clear() {
        Err(err) => anyhow::bail!(err),
        Ok(0) if *splicing => anyhow::bail!(
            "the filters were not placed in any probe program (BPF section without our load \
             handler?)"
        ),
        Ok(_) => {}
    }
    // Tracking trusts a known head only when every head-freeing end point is attached.
    let head_ends: Vec<&Probe> = plan
        .probes
        .iter()
        .filter(|p| p.track_end & types::trail_probe_flag::TRAIL_PROBE_END_HEAD.0 != 0)
        .collect();
    let trusted = !head_ends.is_empty()
        && head_ends
            .iter()
            .all(|p| !report.skipped.contains(&p.spec()));
    if trusted {
        primary
            .maps
            .track_settings
            .update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY)
            .context("cannot configure tracking")?;
    }
    Ok(Attached {
        links,
        report,
        trusted,
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
fn attach_all<'o>(
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
