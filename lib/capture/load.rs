//! Phase 2 of a capture, load: the primary object and one instance per probe that needs its
//! own, configured by the plan, through the verifier.
//!
//! Contract:
//! - The primary object holds every map and loads only the plan's primary programs; an
//!   instance is one more open+load of the same object for one probe, every map shared with
//!   the primary (`reuse_fd`, so events, counters and tracking are one), and the probe id in
//!   its rodata `cfg.fixed_probe`.
//! - Every object gets the same [`ObjectConfig`]; only the instance's `fixed_probe` differs.
//! - The selection's filter bodies are installed for splicing before the primary loads and
//!   stay installed through attach, which may load one more instance (see splice.rs).
//! - An instance of a probe matched by a wildcard that fails to load is skipped with a
//!   warning; any other failure is an error.
//! - Nothing is attached here, and nothing is pinned: dropping [`Loaded`] unloads everything.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use super::bpf::{CaptureSkel, CaptureSkelBuilder};
use super::plan::{ObjectConfig, Placement, Plan};
use super::probe::{Probe, Target};
use super::select::Selection;
use super::splice;

/// Where the opened objects live while loaded (libbpf-rs skeletons borrow their storage).
pub struct Storage {
    primary: MaybeUninit<OpenObject>,
    instances: Vec<MaybeUninit<OpenObject>>,
    /// For the single-kprobe fallback of kprobe-multi, loaded during attach if needed.
    spare: MaybeUninit<OpenObject>,
}

impl Storage {
    /// Room for the primary, one instance per instance placement, and the spare.
    pub fn new(plan: &Plan) -> Storage {
        let instances = plan
            .placements
            .iter()
            .filter(|p| matches!(p, Placement::Instance(_)))
            .count();
        Storage {
            primary: MaybeUninit::uninit(),
            instances: (0..instances).map(|_| MaybeUninit::uninit()).collect(),
            spare: MaybeUninit::uninit(),
        }
    }
}

/// The loaded objects. Fields drop in order: extra objects first, the primary last.
pub struct Loaded<'o> {
    /// Objects loaded during attach (the kprobe fallback).
    pub kept: Vec<CaptureSkel<'o>>,
    /// Instances by probe id.
    pub instances: BTreeMap<u32, CaptureSkel<'o>>,
    /// The programs of each loaded instance, by probe id.
    pub instance_programs: Vec<(u32, Vec<String>)>,
    pub primary: CaptureSkel<'o>,
    /// Storage for one more instance (see [`Storage`]).
    pub spare: Option<&'o mut MaybeUninit<OpenObject>>,
    /// Whether filter bodies were installed for splicing.
    pub splicing: bool,
}

/// Loads the primary object and every instance of `plan`.
pub fn load<'o>(
    storage: &'o mut Storage,
    plan: &Plan,
    config: &ObjectConfig,
    selection: &Selection,
) -> anyhow::Result<Loaded<'o>> {
    let Storage {
        primary,
        instances: instance_storage,
        spare,
    } = storage;
    splice::register().map_err(anyhow::Error::msg)?;
    let mut open = CaptureSkelBuilder::default()
        .open(primary)
        .context("cannot open the BPF object")?;
    config.apply(&mut open, None)?;
    for mut program in open.open_object_mut().progs_mut() {
        let name = program.name().to_string_lossy().into_owned();
        program.set_autoload(plan.programs.contains(&name));
    }
    // The filters stay installed until every instance is loaded (see splice.rs).
    let bodies = selection.bodies(open.open_object_mut())?;
    let splicing = !bodies.is_empty();
    splice::install(bodies);
    let skel = match open.load() {
        Ok(skel) => skel,
        Err(err) => {
            let context = match splice::clear() {
                Err(splice) => splice,
                Ok(_) if selection.selectors != 0 => format!(
                    "cannot load the BPF programs with the filters ({})",
                    selection.describe()
                ),
                Ok(_) => "cannot load the BPF programs".into(),
            };
            return Err(err).context(context);
        }
    };
    for probe in &plan.probes {
        let mut value = [0u8; 8];
        value[..4].copy_from_slice(&Plan::probe_flags(probe).to_ne_bytes());
        skel.maps
            .probe_config
            .update(&probe.id.to_ne_bytes(), &value, MapFlags::ANY)
            .context("cannot configure probes")?;
    }
    // Instances: one per probe whose identity cannot be a cookie.
    let wanted: Vec<(&Probe, &Vec<String>)> = plan
        .probes
        .iter()
        .zip(&plan.placements)
        .filter_map(|(probe, placement)| match placement {
            Placement::Instance(programs) => Some((probe, programs)),
            Placement::Primary(_) => None,
        })
        .collect();
    let jobs: Vec<InstanceJob<'_>> = wanted
        .iter()
        .zip(instance_storage.iter_mut())
        .map(|((probe, programs), storage)| {
            // fentry/fexit and tp_btf programs name their target at load.
            let targets = programs
                .iter()
                .map(|p| {
                    let target = match &probe.target {
                        Target::Function(f) => Some(f.name.clone()),
                        Target::Tracepoint(tp) if p.starts_with("tp_btf_") => Some(tp.name.clone()),
                        Target::Tracepoint(_) => None,
                    };
                    (p.clone(), target)
                })
                .collect();
            (probe.id, targets, storage)
        })
        .collect();
    let results = load_instances(jobs, &skel, config);
    let mut instances = BTreeMap::new();
    let mut instance_programs = Vec::new();
    for ((probe, programs), instance) in wanted.into_iter().zip(results) {
        let instance = match instance {
            Ok(instance) => instance,
            Err(err) if probe.optional => {
                if !probe.is_internal() {
                    eprintln!("trail-capture: warning: skipping {}: {err:#}", probe.spec());
                }
                continue;
            }
            Err(err) => return Err(err.context(probe.spec())),
        };
        instance_programs.push((probe.id, programs.clone()));
        instances.insert(probe.id, instance);
    }
    Ok(Loaded {
        kept: Vec::new(),
        instances,
        instance_programs,
        primary: skel,
        spare: Some(spare),
        splicing,
    })
}

/// Opens one more instance of the object, configured by `config` (as the primary is), maps
/// shared with `primary`, `fixed` as its probe id (`None`: the attach cookie tells), loading
/// only `programs` (each with its fentry/fexit or tp_btf target, if any).
pub fn load_instance<'o>(
    storage: &'o mut MaybeUninit<OpenObject>,
    primary: &CaptureSkel<'_>,
    config: &ObjectConfig,
    fixed: Option<u32>,
    programs: &[(String, Option<String>)],
) -> anyhow::Result<CaptureSkel<'o>> {
    let mut open = CaptureSkelBuilder::default()
        .open(storage)
        .context("cannot open the BPF object")?;
    config.apply(&mut open, fixed)?;
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

/// One instance to load: probe id, programs with their targets (see [`load_instance`]), and
/// where the open object lives.
type InstanceJob<'o> = (
    u32,
    Vec<(String, Option<String>)>,
    &'o mut MaybeUninit<OpenObject>,
);

/// Loads instances on all CPUs, results in the order of `jobs`. Loading is the verifier's
/// work, about 10-20 ms per program, and each instance is its own load, so startup with many
/// tp_btf or fentry probes scales with the CPUs.
fn load_instances<'o>(
    jobs: Vec<InstanceJob<'o>>,
    primary: &CaptureSkel<'_>,
    config: &ObjectConfig,
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
                                load_instance(storage, primary, config, Some(id), &programs),
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
