//! trail-capture: loads the probe programs of `bpf/capture.bpf.c`, attaches them to the
//! requested tracepoints and writes their events as a trail stream.
//!
//! Contract:
//! - Everything the user can get wrong (probe specs, options, privileges, BTF) is checked before
//!   anything is attached, and reported as a usage error.
//! - Each ring-buffer poll batch is written and flushed before the next poll, so pipelines see
//!   events promptly. Losses counted by the programs reach the stream as `lost` records while
//!   capturing (polled every [`STATS_INTERVAL`]), and the trailer holds per-probe totals.
//! - Links and programs live in this function's scope only, nothing is pinned: every exit path
//!   (end of run, signal, broken pipe, error) closes them, and the kernel unloads the programs.
//! - Ordering: events of one CPU leave in the order their programs finished writing them, which
//!   is timestamp order except when a program is interrupted on its CPU by another (a softirq
//!   over a task): the inner event then precedes the outer one. Across CPUs the ring buffer
//!   interleaves by commit time; trail-sort orders by timestamp.

pub mod attach;
pub mod bpf;
pub mod functions;
pub mod kernel;
pub mod kfilter;
pub mod probe;
pub mod profile;
pub mod record;
pub mod select;
pub mod splice;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBufferBuilder};

use self::attach::Placement;
use self::bpf::types;
use self::probe::{Probe, ProbeSpec, Target};
use self::record::Decoder;
use crate::cli::{self, Output};
use crate::model::error::UsageError;
use crate::model::event::{
    self, Clock, Header, Lost, ProbeTotals, Trailer, FORMAT_MAJOR, FORMAT_MINOR,
};
use crate::print;

/// Probes per run (`TRAIL_MAX_PROBES` in `bpf/include/capture.h`).
pub const MAX_PROBES: usize = 1024;
const NEST_LEVELS: u32 = 4;
const STACK_BYTES: u32 = 127 * 8;
/// How often the per-probe loss counters are read while capturing.
pub const STATS_INTERVAL: Duration = Duration::from_millis(200);
/// Longest wait for ring-buffer data: the programs wake the reader only once a batch is
/// waiting, so this bounds the latency of a quiet capture.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const DEFAULT_PROBES: &[&str] = &["tp:net:netif_receive_skb", "tp:net:net_dev_start_xmit"];

// Collector switches (capture.h TRAIL_C_*).
const C_SKB: u32 = 1 << 0;
const C_DEV: u32 = 1 << 1;
const C_NETNS: u32 = 1 << 2;
const C_CT: u32 = 1 << 3;
const C_TRACKING: u32 = 1 << 4;
const C_PACKET: u32 = 1 << 5;
// Probe flags (capture.h TRAIL_PROBE_*).
const PROBE_STACK: u32 = 1 << 0;
const PROBE_FREES: u32 = 1 << 1;
const PROBE_END_HEAD: u32 = 1 << 2;
const PROBE_END_SKB: u32 = 1 << 3;
const PROBE_END_ALWAYS: u32 = 1 << 4;

/// What each event can carry besides `common` and `probe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Collector {
    Skb,
    Dev,
    Netns,
    Ct,
    Tracking,
    Packet,
}

impl Collector {
    fn bit(self) -> u32 {
        match self {
            Collector::Skb => C_SKB,
            Collector::Dev => C_DEV,
            Collector::Netns => C_NETNS,
            Collector::Ct => C_CT,
            Collector::Tracking => C_TRACKING,
            Collector::Packet => C_PACKET,
        }
    }
}

/// Capture packet events from kernel tracepoints with eBPF and write them as a trail stream
/// (text on a terminal, the binary stream into a pipe or with -o).
#[derive(Debug, clap::Parser)]
#[command(name = "trail-capture", version)]
pub struct Args {
    /// Probe to attach, `[KIND:]TARGET[/OPTS]`, repeatable. KIND `tp` (tracepoint, e.g.
    /// `tp:skb:kfree_skb`), `k`/`kprobe`, `kr`/`kretprobe` (with the return value), `f`/`fentry`,
    /// `fx`/`fexit` (with the return value) on any kernel function with a struct sk_buff
    /// argument; globs allowed (`tp:net:*`, `k:tcp_*`). A bare function name (`ip_rcv`) is an
    /// fentry where BPF trampolines work, else a kprobe. OPTS: `stack` (kernel stack).
    /// Default: tp:net:netif_receive_skb and tp:net:net_dev_start_xmit.
    #[arg(short = 'p', long = "probe", value_name = "PROBE")]
    pub probes: Vec<String>,
    /// Use the probes and options of profile NAME (a YAML file; see --list-profiles),
    /// repeatable; -p probes are added to the profile's.
    #[arg(short = 'P', long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// List the profiles found (shipped, user and system directories) and exit.
    #[arg(long)]
    pub list_profiles: bool,
    /// Do not probe the kernel functions that free skbs to end tracking ids (done by default
    /// where kprobes or trampolines work and tracking is collected).
    #[arg(long)]
    pub no_tracking_ends: bool,
    /// List the tracepoints this kernel offers with a struct sk_buff argument (optionally those
    /// matching PATTERN, e.g. `net:*`; `k:tcp_*` lists kernel functions) and exit.
    #[arg(long, value_name = "PATTERN", num_args = 0..=1, default_missing_value = "*")]
    pub list_probes: Option<String>,
    /// Write the binary stream to FILE (appears only once complete).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Packet bytes kept per event (1..=65535). Paged (non-linear) skb data is included at
    /// tracepoints where the kernel lets tp_btf programs read it (`-v` tells); elsewhere, and at
    /// kernel functions, only the linear part is kept.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub snaplen: u32,
    /// Keep only the linear part of packets. Tracepoints then share one raw_tp program instead
    /// of one tp_btf program each: faster start with many probes (one verification in all).
    #[arg(long)]
    pub no_paged: bool,
    /// Ring buffer size shared by all CPUs (power of two, at least 4K; suffixes K, M, G).
    /// Kernel memory charged to the memory cgroup; when full, events are lost and counted.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_buffer_size)]
    pub buffer_size: u64,
    /// Run this shell command once the probes are attached; stop when it exits.
    #[arg(long, value_name = "COMMAND")]
    pub cmd: Option<String>,
    /// Stop after writing N events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Sections to collect besides common and probe (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "skb,dev,netns,ct,tracking,packet"
    )]
    pub collectors: Vec<Collector>,
    /// Keep only packets matching this pcap-filter(7) expression (as tcpdump takes), judged
    /// in the kernel before an event is made. Packets that have only a network header yet are
    /// judged as raw IP.
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Keep only packets whose skb fields match EXPR, e.g. `skb.mark == 0x10`,
    /// `skb.dev.name == "veth0"`, `skb.len > 1000 && !(skb.pkt_type == 0)` (fields from the
    /// kernel's BTF; see docs/filter.md). Repeatable: all must hold.
    #[arg(short = 'm', long = "meta", value_name = "EXPR")]
    pub meta: Vec<String>,
    /// Keep only packets on this interface (skb.dev.name).
    #[arg(long, value_name = "NAME")]
    pub ifname: Option<String>,
    /// Keep only packets with this mark: VALUE or VALUE/MASK.
    #[arg(long, value_name = "VALUE[/MASK]")]
    pub mark: Option<String>,
    /// Keep only packets whose device is in this network namespace: a name under /run/netns,
    /// a path such as /proc/PID/ns/net, or the inode number.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<String>,
    /// Keep only events of this process id (the task running when the probe fires).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Judge each event on its own. By default a packet selected once is followed (by its
    /// tracking id) even after NAT or encapsulation makes it no longer match.
    #[arg(long)]
    pub no_follow: bool,
    /// Report on stderr what is loaded and attached, and how long it took.
    #[arg(short, long)]
    pub verbose: bool,
}

impl Args {
    fn selection_options(&self) -> select::Options {
        select::Options {
            filter: self.filter.clone(),
            meta: self.meta.clone(),
            ifname: self.ifname.clone(),
            mark: self.mark.clone(),
            netns: self.netns.clone(),
            pid: self.pid,
            no_follow: self.no_follow,
        }
    }
}

/// `--buffer-size`: a size ([`cli::parse::parse_size`]) that the ring buffer can have.
fn parse_buffer_size(text: &str) -> Result<u64, String> {
    let bytes = cli::parse::parse_size(text)? as u64;
    if !bytes.is_power_of_two() || !(4096..=(1 << 31)).contains(&bytes) {
        return Err(format!(
            "{bytes} bytes: the ring buffer size must be a power of two between 4K and 2G"
        ));
    }
    Ok(bytes)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM set [`STOP`]; without SA_RESTART so a blocked poll returns at once.
fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// `--list-probes`: tracepoints with an skb argument (no privileges needed beyond reading BTF),
/// or with a function kind prefix (`k:tcp_*`), the traceable kernel functions with one.
fn list_probes(pattern: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let function_kind = pattern.split_once(':').and_then(|(kind, rest)| match kind {
        "k" | "kprobe" | "kr" | "kretprobe" | "f" | "fentry" | "fx" | "fexit" => Some((kind, rest)),
        _ => None,
    });
    if let Some((kind, glob)) = function_kind {
        let all = functions::kernel_functions()?;
        let traceable = functions::traceable();
        let mut seen = std::collections::BTreeSet::new();
        for f in &all {
            let Some(skb) = f.skb else { continue };
            let listed = traceable
                .as_ref()
                .is_none_or(|t| t.get(&f.name).copied() == Some(1));
            if !listed || !probe::glob(glob, &f.name) || !seen.insert(f.name.as_str()) {
                continue;
            }
            write!(out, "{kind}:{}  (skb arg {skb}", f.name)?;
            if let Some(module) = &f.module {
                write!(out, ", module {module}")?;
            }
            writeln!(out, ")")?;
        }
        return Ok(out.flush()?);
    }
    let btf = kernel::kernel_btf()?;
    let all = probe::tracepoints(&btf)?;
    for tp in all
        .iter()
        .filter(|tp| !tp.group.is_empty() && probe::target_matches(pattern, tp))
    {
        let Some(skb) = tp.skb else { continue };
        write!(out, "tp:{}  (skb arg {skb}", tp.full_name())?;
        if let Some(reason) = tp.drop_reason {
            write!(out, ", drop reason arg {reason}")?;
        }
        writeln!(out, ")")?;
    }
    Ok(out.flush()?)
}

/// What the ring-buffer callback and the main loop share.
struct Sink {
    output: Output,
    decoder: Decoder,
    /// Events written, per probe id.
    events: Vec<u64>,
    written: u64,
    limit: Option<u64>,
    error: Option<anyhow::Error>,
}

impl Sink {
    /// Handles one record; a negative return stops the current ring-buffer consumption.
    fn record(&mut self, data: &[u8]) -> i32 {
        if self.limit.is_some_and(|limit| self.written >= limit) || self.error.is_some() {
            return -libc::ECANCELED;
        }
        let result = self
            .decoder
            .event(data)
            .and_then(|event| self.output.event(&event));
        match result {
            Ok(()) => {
                if let Some(id) = Decoder::probe_id(data) {
                    if let Some(count) = self.events.get_mut(id as usize) {
                        *count += 1;
                    }
                }
                self.written += 1;
                0
            }
            Err(err) => {
                self.error = Some(err);
                -libc::ECANCELED
            }
        }
    }

    fn done(&self) -> bool {
        self.error.is_some() || self.limit.is_some_and(|limit| self.written >= limit)
    }
}

/// Per-probe (hits, lost) summed over CPUs.
fn read_stats(skel: &bpf::CaptureSkel<'_>, probes: &[Probe]) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut out = Vec::with_capacity(probes.len());
    for probe in probes {
        let per_cpu = skel
            .maps
            .probe_stats
            .lookup_percpu(&probe.id.to_ne_bytes(), MapFlags::ANY)
            .context("cannot read the probe counters")?
            .unwrap_or_default();
        let mut total = (0, 0);
        for value in per_cpu {
            let mut stats = types::trail_probe_stats::default();
            if plain::copy_from_bytes(&mut stats, &value).is_ok() {
                total.0 += stats.hits;
                total.1 += stats.lost;
            }
        }
        out.push(total);
    }
    Ok(out)
}

/// Hits the kernel did not run a program for because it was already running on that CPU
/// (`recursion_misses` of the loaded programs): not counted by the programs themselves.
fn recursion_misses(skel: &bpf::CaptureSkel<'_>, loaded: &[String]) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    let mut total = 0;
    for program in skel.object().progs() {
        if !loaded
            .iter()
            .any(|name| program.name().to_str() == Some(name.as_str()))
        {
            continue;
        }
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: the fd is a loaded program's; `info` and `len` describe a writable buffer.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                program.as_fd().as_raw_fd(),
                &mut info,
                &mut len,
            )
        };
        if rc == 0 {
            total += info.recursion_misses;
        }
    }
    total
}

/// Entry point of `trail-capture`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(pattern) = &args.list_probes {
        return list_probes(pattern);
    }
    if args.list_profiles {
        return profile::list();
    }
    let mut args = args;
    let mut specs: Vec<ProbeSpec> = Vec::new();
    for name in &args.profiles.clone() {
        let profile = profile::find(name)?;
        specs.extend(profile.apply(&mut args)?);
    }
    let explicit: Vec<ProbeSpec> = args
        .probes
        .iter()
        .map(|s| ProbeSpec::parse(s))
        .collect::<Result<_, _>>()?;
    specs.extend(explicit);
    if specs.is_empty() {
        specs = DEFAULT_PROBES
            .iter()
            .map(|s| ProbeSpec::parse(s))
            .collect::<Result<_, _>>()?;
    }
    if args.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
        return Err(UsageError("--duration must be a positive number of seconds".into()).into());
    }
    if args.count == Some(0) {
        return Err(UsageError("--count must be at least 1".into()).into());
    }
    kernel::check_privileges()?;
    // Early: a SIGINT while loading (seconds on a slow machine) is a clean stop too.
    install_signal_handlers();
    let btf = kernel::kernel_btf()?;
    let all = probe::tracepoints(&btf)?;
    if all.iter().all(|tp| tp.group.is_empty()) {
        anyhow::bail!("cannot read tracepoint groups from tracefs (mount it: mount -t tracefs nodev /sys/kernel/tracing)");
    }
    let collectors = args.collectors.iter().fold(0, |mask, c| mask | c.bit());
    let features = functions::Features::detect(&btf, probe::fentry_test_id(&btf), !args.no_paged);
    let wants_functions = specs.iter().any(|s| s.kind != event::ProbeKind::Tracepoint);
    let track_ends = collectors & C_TRACKING != 0
        && !args.no_tracking_ends
        && (features.kprobes || features.trampolines.is_ok());
    let (kernel_functions, traceable) = if wants_functions || track_ends {
        (functions::kernel_functions()?, functions::traceable())
    } else {
        (Vec::new(), None)
    };
    let targets = probe::Targets {
        tracepoints: &all,
        functions: &kernel_functions,
        traceable: traceable.as_ref(),
        features: &features,
    };
    let mut probes = probe::resolve(&specs, &targets, &mut |warning| {
        eprintln!("trail-capture: warning: {warning}")
    })?;
    let internal = if track_ends {
        probe::add_track_ends(&mut probes, &targets)
    } else {
        Vec::new()
    };
    let placements: Vec<Placement> = probes
        .iter()
        .map(|p| attach::placement(p, &features))
        .collect::<Result<_, _>>()?;
    let programs: Vec<String> = {
        let mut names: Vec<String> = placements
            .iter()
            .filter_map(|p| match p {
                Placement::Primary(names) => Some(names.clone()),
                Placement::Instance(_) => None,
            })
            .flatten()
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let kallsyms = if probes.iter().any(|p| p.stack) {
        Some(kernel::Kallsyms::load().context("cannot symbolize stacks")?)
    } else {
        None
    };
    let decoder = Decoder::new(
        &probes,
        probe::enum_names(&btf, "skb_drop_reason", "SKB_DROP_REASON_"),
        probe::enum_names(&btf, "skb_drop_reason_subsys", "SKB_DROP_REASON_SUBSYS_"),
        probe::enum_names(&btf, "tcp_conntrack", "TCP_CONNTRACK_"),
        kallsyms,
    );
    let selection = select::Selection::build(
        &args.selection_options(),
        &btf,
        collectors & C_TRACKING != 0,
        &mut |warning| eprintln!("trail-capture: warning: {warning}"),
    )?;
    drop(btf);
    drop(kernel_functions);
    let output = Output::create(args.output.as_deref(), print::terminal)?;
    let text = output.is_text();

    // Load: only the programs the probes use, with the record size --snaplen asks for.
    let started = Instant::now();
    let record_max = std::mem::size_of::<types::trail_event>() as u32 + args.snaplen + STACK_BYTES;
    let cpus = libbpf_rs::num_possible_cpus().context("cannot count CPUs")? as u32;
    splice::register().map_err(anyhow::Error::msg)?;
    // Everything the primary object and each instance are opened with.
    let configure = |open: &mut bpf::OpenCaptureSkel<'_>| -> anyhow::Result<()> {
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("BPF object has no rodata")?;
        rodata.snaplen = args.snaplen;
        rodata.collectors = collectors;
        rodata.record_max = record_max;
        rodata.wakeup_bytes = (args.buffer_size / 8).min(1 << 20);
        rodata.selectors = selection.selectors;
        rodata.select_pid = selection.pid;
        open.maps.events.set_max_entries(args.buffer_size as u32)?;
        open.maps.scratch.set_value_size(record_max)?;
        open.maps.scratch.set_max_entries(cpus * NEST_LEVELS)?;
        // Records parked between function entry and return (kretprobe, fexit): at most
        // 64 MiB of them, at least 64.
        open.maps.kret_pending.set_value_size(record_max)?;
        open.maps
            .kret_pending
            .set_max_entries(((64 << 20) / record_max).clamp(64, 4096))?;
        Ok(())
    };
    let mut storage = MaybeUninit::uninit();
    let mut open = bpf::CaptureSkelBuilder::default()
        .open(&mut storage)
        .context("cannot open the BPF object")?;
    configure(&mut open)?;
    for mut program in open.open_object_mut().progs_mut() {
        let name = program.name().to_string_lossy().into_owned();
        program.set_autoload(programs.contains(&name));
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
    for probe in &probes {
        let mut config = [0u8; 8];
        let flags = if probe.stack { PROBE_STACK } else { 0 }
            | if probe.frees_skb() { PROBE_FREES } else { 0 }
            | probe.track_end;
        config[..4].copy_from_slice(&flags.to_ne_bytes());
        skel.maps
            .probe_config
            .update(&probe.id.to_ne_bytes(), &config, MapFlags::ANY)
            .context("cannot configure probes")?;
    }
    // Instances: one per probe whose identity cannot be a cookie, plus one spare for the
    // single-kprobe fallback of kprobe-multi.
    let wanted: Vec<(&Probe, &Vec<String>)> = probes
        .iter()
        .zip(&placements)
        .filter_map(|(probe, placement)| match placement {
            Placement::Instance(programs) => Some((probe, programs)),
            Placement::Primary(_) => None,
        })
        .collect();
    let mut storages: Vec<MaybeUninit<libbpf_rs::OpenObject>> =
        (0..=wanted.len()).map(|_| MaybeUninit::uninit()).collect();
    let (spare, storages) = storages.split_last_mut().context("no storage")?;
    let mut instances = BTreeMap::new();
    let mut instance_programs: Vec<(u32, Vec<String>)> = Vec::new();
    let jobs: Vec<attach::InstanceJob<'_>> = wanted
        .iter()
        .zip(storages.iter_mut())
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
    let results = attach::load_instances(jobs, &skel, &configure);
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
    let loaded = started.elapsed();

    // Attach: cookies on the primary object, instances as they are.
    let mut spare = Some(spare);
    let mut fallback = |names: &[String]| {
        let storage = spare.take().context("kprobe fallback used twice")?;
        let programs: Vec<(String, Option<String>)> =
            names.iter().map(|n| (n.clone(), None)).collect();
        attach::load_instance(storage, &skel, &configure, attach::NO_PROBE, &programs)
    };
    let mut kept = Vec::new();
    let (links, report) = attach::attach_all(
        &skel,
        &probes,
        &placements,
        &instances,
        &mut fallback,
        &mut kept,
        &mut |warning| eprintln!("trail-capture: warning: {warning}"),
    )?;
    let attached = started.elapsed();
    match splice::clear() {
        Err(err) => anyhow::bail!(err),
        Ok(0) if splicing => anyhow::bail!(
            "the filters were not placed in any probe program (BPF section without our load \
             handler?)"
        ),
        Ok(_) => {}
    }
    // Tracking trusts a known head only when every head-freeing end point is attached.
    let head_ends: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.track_end & PROBE_END_HEAD != 0)
        .collect();
    let trusted = !head_ends.is_empty()
        && head_ends
            .iter()
            .all(|p| !report.skipped.contains(&p.spec()));
    if trusted {
        skel.maps
            .track_settings
            .update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY)
            .context("cannot configure tracking")?;
    }
    if args.verbose {
        eprintln!("trail-capture: kernel: {}", features.describe());
        eprintln!(
            "trail-capture: {} probes, programs {:?} and {} instances; loaded in {:.1} ms, attached in {:.1} ms ({})",
            probes.iter().filter(|p| !p.is_internal()).count(),
            programs,
            instances.len() + kept.len(),
            loaded.as_secs_f64() * 1e3,
            (attached - loaded).as_secs_f64() * 1e3,
            report
                .methods
                .iter()
                .map(|(method, n)| format!("{n} {method}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if selection.selectors != 0 {
            eprintln!("trail-capture: selection: {}", selection.describe());
        }
        if let Some(why) = &report.multi_fallback {
            eprintln!("trail-capture: kprobe-multi failed, attached one by one: {why}");
        }
        if !internal.is_empty() {
            eprintln!(
                "trail-capture: tracking ends at {}{}",
                internal.join(", "),
                if trusted {
                    ""
                } else {
                    " (not all attached: reuse guessed from bytes)"
                }
            );
        }
    }
    let probes: Vec<Probe> = probes;
    let public: Vec<&Probe> = probes.iter().filter(|p| !p.is_internal()).collect();

    let (host, release) = kernel::uname();
    let (offset, started_ns) = kernel::realtime_offset_ns();
    let header = Header {
        version: (FORMAT_MAJOR, FORMAT_MINOR),
        tool: "trail-capture".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host,
        kernel: release,
        clock: Clock {
            source: "monotonic".into(),
            realtime_offset_ns: offset,
        },
        command: std::env::args().collect(),
        probes: public.iter().map(|p| p.spec()).collect(),
        snaplen: args.snaplen,
        started_ns,
        pipeline: vec![cli::this_stage("trail-capture")],
    };
    let sink = RefCell::new(Sink {
        output,
        decoder,
        events: vec![0; probes.len()],
        written: 0,
        limit: args.count,
        error: None,
    });
    {
        let mut sink = sink.borrow_mut();
        sink.output.header(&header)?;
        sink.output.flush()?;
    }

    let mut child = match &args.cmd {
        Some(cmd) => Some(spawn(cmd, args.output.is_none() && !text)?),
        None => None,
    };
    let start_mono = kernel::monotonic_ns();
    let deadline = args
        .duration
        .map(|secs| started + Duration::from_secs_f64(secs) + attached);
    let mut ring = RingBufferBuilder::new();
    ring.add(&skel.maps.events, |data: &[u8]| {
        sink.borrow_mut().record(data)
    })?;
    let ring = ring.build()?;

    let mut reported_lost = vec![0u64; probes.len()];
    let mut last_stats = (Instant::now(), start_mono);
    let mut report_lost = |skel: &bpf::CaptureSkel<'_>,
                           sink: &RefCell<Sink>,
                           last: &mut (Instant, u64)|
     -> anyhow::Result<Vec<(u64, u64)>> {
        let stats = read_stats(skel, &probes)?;
        let now = kernel::monotonic_ns();
        let mut sink = sink.borrow_mut();
        for (probe, ((_, lost), reported)) in probes
            .iter()
            .zip(stats.iter().zip(reported_lost.iter_mut()))
            .filter(|(probe, _)| !probe.is_internal())
        {
            if *lost > *reported {
                sink.output.lost(&Lost {
                    probe: probe.spec(),
                    count: *lost - *reported,
                    first_ns: last.1,
                    last_ns: now,
                    reason: "ringbuf-full".into(),
                })?;
                *reported = *lost;
            }
        }
        *last = (Instant::now(), now);
        Ok(stats)
    };

    let mut child_status = None;
    loop {
        // The programs wake the reader only once a batch is waiting, and a poll that times out
        // consumes nothing: drain whatever is there after every poll, so a quiet capture's
        // events leave within POLL_TIMEOUT.
        let polled = ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume());
        if let Some(err) = sink.borrow_mut().error.take() {
            return Err(err);
        }
        if let Err(err) = polled {
            if !sink.borrow().done() && err.kind() != libbpf_rs::ErrorKind::Interrupted {
                return Err(err).context("cannot read the ring buffer");
            }
        }
        if last_stats.0.elapsed() >= STATS_INTERVAL {
            report_lost(&skel, &sink, &mut last_stats)?;
        }
        sink.borrow_mut().output.flush()?;
        if cli::stdout_reader_gone() {
            // Same as a write failing with EPIPE: stop quietly, probes detached below.
            break;
        }
        if STOP.load(Ordering::Relaxed)
            || sink.borrow().done()
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait()? {
                child_status = Some(status);
                break;
            }
        }
    }

    // Detach first, then drain what the programs wrote before detaching.
    drop(links);
    if !sink.borrow().done() {
        let _ = ring.consume();
    }
    if let Some(err) = sink.borrow_mut().error.take() {
        return Err(err);
    }
    let stats = report_lost(&skel, &sink, &mut last_stats)?;
    let mut missed = recursion_misses(&skel, &programs);
    for (id, programs) in &instance_programs {
        if let Some(instance) = instances.get(id) {
            missed += recursion_misses(instance, programs);
        }
    }
    if missed > 0 {
        sink.borrow_mut().output.lost(&Lost {
            probe: String::new(),
            count: missed,
            first_ns: start_mono,
            last_ns: kernel::monotonic_ns(),
            reason: "recursion".into(),
        })?;
    }
    drop(ring);
    drop(kept);
    drop(instances);
    drop(skel);
    let duration_ns = kernel::monotonic_ns().saturating_sub(start_mono);
    let mut sink = sink.into_inner();
    let mut trailer = Trailer {
        events: sink.written,
        lost: stats.iter().map(|s| s.1).sum(),
        duration_ns,
        probes: BTreeMap::new(),
    };
    for (probe, ((hits, lost), events)) in probes
        .iter()
        .zip(stats.iter().zip(&sink.events))
        .filter(|(probe, _)| !probe.is_internal())
    {
        trailer.probes.insert(
            probe.spec(),
            ProbeTotals {
                hits: *hits,
                events: *events,
                lost: *lost,
            },
        );
    }
    sink.output.trailer(&trailer)?;
    sink.output.finish()?;

    let mut summary = format!(
        "trail-capture: {} events written, {} lost, {:.3} s",
        trailer.events,
        trailer.lost,
        duration_ns as f64 / 1e9
    );
    if missed > 0 {
        summary.push_str(&format!(
            "; {missed} hits not run by the kernel (program already running on the CPU)"
        ));
    }
    for (name, totals) in trailer.probes.iter().filter(|(_, t)| t.lost > 0) {
        summary.push_str(&format!(
            "; {name}: {} lost of {} hits",
            totals.lost, totals.hits
        ));
    }
    eprintln!("{summary}");
    if let Some(c) = child.as_mut() {
        if child_status.is_none() {
            // Stopped by a signal or a limit before the command ended: do not leave it behind.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    Ok(())
}

/// Starts `--cmd` under `sh -c`. When the stream goes to stdout, the command's stdout goes to
/// stderr so it cannot corrupt the stream.
fn spawn(cmd: &str, stdout_is_stream: bool) -> anyhow::Result<Child> {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(cmd);
    if stdout_is_stream {
        use std::os::fd::AsFd;
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        command.stdout(Stdio::from(stderr));
    }
    command
        .spawn()
        .with_context(|| format!("cannot run --cmd '{cmd}'"))
}

#[cfg(test)]
mod tests {
    use super::parse_buffer_size as parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("3000").is_err(), "not a power of two");
        assert!(parse_size("2K").is_err(), "below a page");
        assert!(parse_size("4G").is_err(), "above 2G");
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
