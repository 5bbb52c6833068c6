//! trail-capture: loads the probe programs of `bpf/capture.bpf.c`, attaches them to the
//! requested tracepoints and writes their events as a trail stream.
//!
//! A capture runs in named phases, each in its own module with its own contract:
//! 1. plan ([`plan`]): flags and profiles merged, probes resolved against what the kernel
//!    offers, placements and the object configuration decided; pure.
//! 2. load ([`load`]): the primary object and the per-probe instances through the verifier.
//! 3. attach ([`attach`]): links, the kprobe fallback, tracking settings.
//! 4. session ([`session::run`]): header, `--cmd`, ring-buffer polling, writing, loss counters.
//! 5. finish ([`session::finish`]): trailer and summary, after everything is unloaded.
//!
//! Contract of the whole:
//! - Everything the user can get wrong (probe specs, options, privileges, BTF) is checked before
//!   anything is attached, and reported as a usage error.
//! - Links and programs live in [`run`]'s scope only, nothing is pinned: every exit path
//!   (end of run, signal, broken pipe, error) closes them, and the kernel unloads the programs.
//! - Ordering: events of one CPU leave in the order their programs finished writing them, which
//!   is timestamp order except when a program is interrupted on its CPU by another (a softirq
//!   over a task): the inner event then precedes the outer one. Across CPUs the ring buffer
//!   interleaves by commit time; trail-sort orders by timestamp.
//! - Constants shared with the programs (flags, limits, the configuration struct) come from
//!   `bpf/include/capture.h` through the skeleton ([`bpf`]), never copied by hand.

pub mod attach;
pub mod bpf;
pub mod functions;
pub mod kernel;
pub mod kfilter;
pub mod load;
pub mod plan;
pub mod probe;
pub mod profile;
pub mod record;
pub mod select;
pub mod session;
pub mod splice;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use self::bpf::types;
use self::functions::Features;
use self::plan::{ObjectConfig, Plan, Request};
use self::probe::Tracepoint;
use self::record::Decoder;
use crate::cli::Output;
use crate::print;

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
    /// Its switch in the programs' `collectors` (`enum trail_collector`).
    fn bit(self) -> u32 {
        use types::trail_collector as C;
        match self {
            Collector::Skb => C::TRAIL_C_SKB.0,
            Collector::Dev => C::TRAIL_C_DEV.0,
            Collector::Netns => C::TRAIL_C_NETNS.0,
            Collector::Ct => C::TRAIL_C_CT.0,
            Collector::Tracking => C::TRAIL_C_TRACKING.0,
            Collector::Packet => C::TRAIL_C_PACKET.0,
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
    /// kernel functions, only the linear part is kept [default: 256].
    // `None`: not given, so a profile's value or plan::DEFAULT_SNAPLEN applies. The help text
    // names the default itself (a clap default would hide whether the flag was given); a plan
    // test checks the two agree.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(bpf::SNAPLEN_MAX)))]
    pub snaplen: Option<u32>,
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
    /// Stop after SECS seconds (or a duration with a unit: 500ms, 2m).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Sections to collect besides common and probe (comma-separated)
    /// [default: skb,dev,netns,ct,tracking,packet].
    // `None`: not given, so a profile's value or plan::DEFAULT_COLLECTORS applies (as above).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub collectors: Option<Vec<Collector>>,
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

/// `--duration`: seconds, read by the one duration parser of every tool
/// ([`crate::cli::parse::parse_duration`]; a bare number is seconds).
fn parse_seconds(text: &str) -> Result<f64, String> {
    crate::cli::parse::parse_duration(text).map(|ns| ns as f64 / 1e9)
}

/// `--buffer-size`: a size ([`cli::parse::parse_size`]) that the ring buffer can have.
fn parse_buffer_size(text: &str) -> Result<u64, String> {
    let bytes = crate::cli::parse::parse_size(text)? as u64;
    if !bytes.is_power_of_two() || !(4096..=(1 << 31)).contains(&bytes) {
        return Err(format!(
            "{bytes} bytes: the ring buffer size must be a power of two between 4K and 2G"
        ));
    }
    Ok(bytes)
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

/// The kernel as the plan sees it: read once, before planning.
struct Kernel {
    btf: libbpf_rs::btf::Btf<'static>,
    tracepoints: Vec<Tracepoint>,
    features: Features,
    functions: Vec<functions::Function>,
    traceable: Option<std::collections::HashMap<String, u32>>,
}

impl Kernel {
    /// Reads BTF, tracepoints and features, and the kernel's functions when `request` has
    /// function probes or wants the tracking end points.
    fn read(request: &Request, args: &Args) -> anyhow::Result<Kernel> {
        let btf = kernel::kernel_btf()?;
        let tracepoints = probe::tracepoints(&btf)?;
        if tracepoints.iter().all(|tp| tp.group.is_empty()) {
            anyhow::bail!("cannot read tracepoint groups from tracefs (mount it: mount -t tracefs nodev /sys/kernel/tracing)");
        }
        let features = Features::detect(&btf, probe::fentry_test_id(&btf), !args.no_paged);
        let (functions, traceable) =
            if request.wants_functions() || request.track_ends(args.no_tracking_ends, &features) {
                (functions::kernel_functions()?, functions::traceable())
            } else {
                (Vec::new(), None)
            };
        Ok(Kernel {
            btf,
            tracepoints,
            features,
            functions,
            traceable,
        })
    }

    fn targets(&self) -> probe::Targets<'_> {
        probe::Targets {
            tracepoints: &self.tracepoints,
            functions: &self.functions,
            traceable: self.traceable.as_ref(),
            features: &self.features,
        }
    }
}

fn warn(warning: String) {
    eprintln!("trail-capture: warning: {warning}");
}

/// Entry point of `trail-capture`: the phases in order.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(pattern) = &args.list_probes {
        return list_probes(pattern);
    }
    if args.list_profiles {
        return profile::list();
    }

    // Plan.
    let host = if args.profiles.is_empty() {
        profile::Host::default()
    } else {
        profile::Host::read()
    };
    let request = Request::new(&args, &profile::find, &host)?;
    kernel::check_privileges()?;
    session::install_signal_handlers();
    let kernel = Kernel::read(&request, &args)?;
    let track_ends = request.track_ends(args.no_tracking_ends, &kernel.features);
    let plan = Plan::new(&request, &kernel.targets(), track_ends, &mut warn)?;
    let kallsyms = if plan.stacks() {
        Some(kernel::Kallsyms::load().context("cannot symbolize stacks")?)
    } else {
        None
    };
    let btf = &kernel.btf;
    let decoder = Decoder::new(
        &plan.probes,
        probe::enum_names(btf, "skb_drop_reason", "SKB_DROP_REASON_"),
        probe::enum_names(btf, "skb_drop_reason_subsys", "SKB_DROP_REASON_SUBSYS_"),
        probe::enum_names(btf, "tcp_conntrack", "TCP_CONNTRACK_"),
        kallsyms,
    );
    let selection = select::Selection::build(
        &args.selection_options(),
        btf,
        request.tracking(),
        &mut warn,
    )?;
    let features = kernel.features.clone();
    drop(kernel);
    let output = Output::create(args.output.as_deref(), print::terminal)?;
    let text = output.is_text();

    // Load: only the programs the plan places in the primary object, plus the instances.
    let started = Instant::now();
    let cpus = libbpf_rs::num_possible_cpus().context("cannot count CPUs")? as u32;
    let config = ObjectConfig::new(
        &request,
        args.buffer_size,
        selection.selectors,
        selection.pid,
        cpus,
    );
    let mut storage = load::Storage::new(&plan);
    let mut loaded = load::load(&mut storage, &plan, &config, &selection)?;
    let loaded_in = started.elapsed();

    // Attach.
    let attached = attach::attach(&mut loaded, &plan, &config)?;
    let attached_in = started.elapsed();
    if args.verbose {
        report_setup(
            &features,
            &plan,
            &loaded,
            &attached,
            &selection,
            (loaded_in, attached_in),
        );
    }

    // Session, then finish once every object is unloaded.
    let settings = session::Settings {
        snaplen: request.snaplen,
        count: args.count,
        duration: args.duration,
        cmd: args.cmd.as_deref(),
        stream_on_stdout: args.output.is_none() && !text,
        started,
        attached: attached_in,
    };
    let outcome = session::run(&loaded, attached.links, &plan, output, decoder, &settings)?;
    drop(loaded);
    session::finish(outcome, &plan)
}

/// `-v`: what was loaded and attached, and how long it took.
fn report_setup(
    features: &Features,
    plan: &Plan,
    loaded: &load::Loaded<'_>,
    attached: &attach::Attached,
    selection: &select::Selection,
    (loaded_in, attached_in): (std::time::Duration, std::time::Duration),
) {
    let report = &attached.report;
    eprintln!("trail-capture: kernel: {}", features.describe());
    eprintln!(
        "trail-capture: {} probes, programs {:?} and {} instances; loaded in {:.1} ms, attached in {:.1} ms ({})",
        plan.public().count(),
        plan.programs,
        loaded.instances.len() + loaded.kept.len(),
        loaded_in.as_secs_f64() * 1e3,
        (attached_in - loaded_in).as_secs_f64() * 1e3,
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
    if !plan.track_ends.is_empty() {
        eprintln!(
            "trail-capture: tracking ends at {}{}",
            plan.track_ends.join(", "),
            if attached.trusted {
                ""
            } else {
                " (not all attached: reuse guessed from bytes)"
            }
        );
    }
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
