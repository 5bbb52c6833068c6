//! Phase 1 of a capture, the plan: what to load and attach, decided before anything touches
//! BPF. Pure functions of their inputs (the arguments, the profiles, what the kernel offers),
//! so every decision here is unit-tested without privileges.
//!
//! Contract:
//! - [`Request::new`] merges flags and profiles: a value given on the command line wins over
//!   every profile, the first profile that sets a value wins over later ones and over the
//!   default, and the defaults ([`DEFAULT_SNAPLEN`], [`DEFAULT_COLLECTORS`],
//!   [`DEFAULT_PROBES`]) are applied here and nowhere else. The parsed arguments are never
//!   rewritten.
//! - [`Plan::new`] turns the request into probes (ids in order, tracking end points last), the
//!   placement of each probe, and the programs of the primary object.
//! - [`ObjectConfig::new`] computes the read-only configuration (`struct trail_config`) and map
//!   sizes every opened object gets; [`ObjectConfig::apply`] is the only writer of rodata.

use anyhow::Context;

use super::bpf::{types, OpenCaptureSkel, NEST_LEVELS, STACK_BYTES};
use super::functions::Features;
use super::probe::{self, Probe, ProbeSpec, Target, Targets};
use super::profile::{Host, Profile};
use super::{Args, Collector};
use crate::model::error::UsageError;
use crate::model::event::ProbeKind;

/// `--snaplen` when neither the command line nor a profile sets it (shown by `--help`).
pub const DEFAULT_SNAPLEN: u32 = 256;
/// `--collectors` when neither the command line nor a profile sets them (shown by `--help`).
pub const DEFAULT_COLLECTORS: [Collector; 6] = [
    Collector::Skb,
    Collector::Dev,
    Collector::Netns,
    Collector::Ct,
    Collector::Tracking,
    Collector::Packet,
];
/// The probes when neither `-p` nor a profile gives any.
pub const DEFAULT_PROBES: &[&str] = &["tp:net:netif_receive_skb", "tp:net:net_dev_start_xmit"];

/// What the user asked for: the options a profile may set, merged with the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Profile probes first (in profile order), then `-p`, else [`DEFAULT_PROBES`].
    pub specs: Vec<ProbeSpec>,
    pub snaplen: u32,
    pub collectors: Vec<Collector>,
}

impl Request {
    /// Merges `args` with the profiles it names; `find` looks a profile up by name and `host`
    /// is what profile conditions are judged against. Also refuses `--duration` and `--count`
    /// values that make no sense, as usage errors.
    pub fn new(
        args: &Args,
        find: &dyn Fn(&str) -> anyhow::Result<Profile>,
        host: &Host,
    ) -> anyhow::Result<Request> {
        let mut specs = Vec::new();
        let mut snaplen = args.snaplen;
        let mut collectors = args.collectors.clone();
        for name in &args.profiles {
            let profile = find(name)?;
            specs.extend(profile.probes(host)?);
            if snaplen.is_none() {
                snaplen = profile.snaplen.map(|s| s.clamp(1, super::bpf::SNAPLEN_MAX));
            }
            if collectors.is_none() {
                collectors = profile.collectors()?;
            }
        }
        for text in &args.probes {
            specs.push(ProbeSpec::parse(text)?);
        }
        if specs.is_empty() {
            specs = DEFAULT_PROBES
                .iter()
                .map(|s| ProbeSpec::parse(s))
                .collect::<Result<_, _>>()?;
        }
        if args.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
            return Err(
                UsageError("--duration must be a positive number of seconds".into()).into(),
            );
        }
        if args.count == Some(0) {
            return Err(UsageError("--count must be at least 1".into()).into());
        }
        Ok(Request {
            specs,
            snaplen: snaplen.unwrap_or(DEFAULT_SNAPLEN),
            collectors: collectors.unwrap_or_else(|| DEFAULT_COLLECTORS.to_vec()),
        })
    }

    /// The collectors as the programs' `collectors` switch.
    pub fn collector_bits(&self) -> u32 {
        self.collectors.iter().fold(0, |mask, c| mask | c.bit())
    }

    pub fn tracking(&self) -> bool {
        self.collectors.contains(&Collector::Tracking)
    }

    /// Whether any probe is on a kernel function (then the kernel's functions are read).
    pub fn wants_functions(&self) -> bool {
        self.specs.iter().any(|s| s.kind != ProbeKind::Tracepoint)
    }

    /// Whether to probe the functions that free skbs, to end tracking ids: with the tracking
    /// collector, unless `--no-tracking-ends`, where kprobes or trampolines work.
    pub fn track_ends(&self, no_tracking_ends: bool, features: &Features) -> bool {
        self.tracking() && !no_tracking_ends && (features.kprobes || features.trampolines.is_ok())
    }
}

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

/// The probes, where each is loaded, and what the primary object loads.
#[derive(Debug)]
pub struct Plan {
    /// The user's probes (ids in order), then the internal tracking end points.
    pub probes: Vec<Probe>,
    /// One per probe, same order.
    pub placements: Vec<Placement>,
    /// Programs the primary object loads (sorted, no duplicates).
    pub programs: Vec<String>,
    /// The tracking end points added, in the user's syntax (for `-v`).
    pub track_ends: Vec<String>,
}

impl Plan {
    /// Resolves the request's probe specs against the kernel's `targets`; `track_ends`: add the
    /// tracking end points (see [`Request::track_ends`]).
    pub fn new(
        request: &Request,
        targets: &Targets<'_>,
        track_ends: bool,
        warn: &mut dyn FnMut(String),
    ) -> anyhow::Result<Plan> {
        let mut probes = probe::resolve(&request.specs, targets, warn)?;
        let track_ends = if track_ends {
            probe::add_track_ends(&mut probes, targets)
        } else {
            Vec::new()
        };
        let placements: Vec<Placement> = probes
            .iter()
            .map(|p| placement(p, targets.features))
            .collect::<Result<_, _>>()?;
        let mut programs: Vec<String> = placements
            .iter()
            .filter_map(|p| match p {
                Placement::Primary(names) => Some(names.clone()),
                Placement::Instance(_) => None,
            })
            .flatten()
            .collect();
        programs.sort();
        programs.dedup();
        Ok(Plan {
            probes,
            placements,
            programs,
            track_ends,
        })
    }

    /// The probes the user asked for (not the internal tracking end points).
    pub fn public(&self) -> impl Iterator<Item = &Probe> {
        self.probes.iter().filter(|p| !p.is_internal())
    }

    /// Whether any probe collects the kernel stack (then stacks are symbolized).
    pub fn stacks(&self) -> bool {
        self.probes.iter().any(|p| p.stack)
    }

    /// Each probe's `probe_config.flags` (`enum trail_probe_flag`).
    pub fn probe_flags(probe: &Probe) -> u32 {
        use types::trail_probe_flag as F;
        let stack = if probe.stack {
            F::TRAIL_PROBE_STACK.0
        } else {
            0
        };
        let frees = if probe.frees_skb() {
            F::TRAIL_PROBE_FREES.0
        } else {
            0
        };
        stack | frees | probe.track_end
    }
}

/// What every opened object (primary and instances) is configured with before load.
#[derive(Clone, Copy, Debug)]
pub struct ObjectConfig {
    /// The rodata, but for `fixed_probe` (per instance).
    pub rodata: types::trail_config,
    /// Ring-buffer size in bytes (`--buffer-size`).
    pub ring_bytes: u32,
    /// Scratch records: one per CPU and nesting level.
    pub scratch_entries: u32,
    /// Records parked between function entry and return (kretprobe, fexit).
    pub pending_entries: u32,
}

impl ObjectConfig {
    /// `selectors` and `select_pid` come from the compiled selection; `cpus` is the number of
    /// possible CPUs.
    pub fn new(
        request: &Request,
        buffer_size: u64,
        selectors: u32,
        select_pid: u32,
        cpus: u32,
    ) -> ObjectConfig {
        let record_max =
            std::mem::size_of::<types::trail_event>() as u32 + request.snaplen + STACK_BYTES;
        ObjectConfig {
            rodata: types::trail_config {
                wakeup_bytes: (buffer_size / 8).min(1 << 20),
                snaplen: request.snaplen,
                collectors: request.collector_bits(),
                record_max,
                selectors,
                select_pid,
                fixed_probe: 0,
            },
            ring_bytes: buffer_size as u32,
            scratch_entries: cpus * NEST_LEVELS,
            // At most 64 MiB of parked records, at least 64.
            pending_entries: ((64 << 20) / record_max).clamp(64, 4096),
        }
    }

    /// Writes the configuration into an opened object. `fixed_probe`: the probe id of an
    /// instance; `None` keeps the object's own default (the attach cookie tells the probe).
    pub fn apply(
        &self,
        open: &mut OpenCaptureSkel<'_>,
        fixed_probe: Option<u32>,
    ) -> anyhow::Result<()> {
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("BPF object has no rodata")?;
        rodata.cfg = types::trail_config {
            fixed_probe: fixed_probe.unwrap_or(rodata.cfg.fixed_probe),
            ..self.rodata
        };
        let record_max = self.rodata.record_max;
        open.maps.events.set_max_entries(self.ring_bytes)?;
        open.maps.scratch.set_value_size(record_max)?;
        open.maps.scratch.set_max_entries(self.scratch_entries)?;
        open.maps.kret_pending.set_value_size(record_max)?;
        open.maps
            .kret_pending
            .set_max_entries(self.pending_entries)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::capture::functions::Function;
    use crate::capture::probe::Tracepoint;
    use crate::capture::profile;

    fn args(line: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("trail-capture").chain(line.iter().copied()))
            .expect("valid arguments")
    }

    /// Profiles by name from YAML texts.
    fn finder(profiles: &[(&str, &str)]) -> impl Fn(&str) -> anyhow::Result<Profile> {
        let profiles: Vec<(String, String)> = profiles
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        move |name: &str| {
            let (_, text) = profiles
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| UsageError(format!("no profile '{name}'")))?;
            profile::parse(name, text)
        }
    }

    fn host() -> Host {
        Host {
            release: "6.18.0-1-amd64".into(),
            symbols: ["ip_rcv".to_string()].into_iter().collect(),
        }
    }

    fn request(line: &[&str], profiles: &[(&str, &str)]) -> anyhow::Result<Request> {
        Request::new(&args(line), &finder(profiles), &host())
    }

    const SMALL: &str = "snaplen: 128\ncollectors: [dev, packet]\nprobes:\n  - tp:skb:kfree_skb\n";
    const OTHER: &str = "snaplen: 64\ncollectors: [skb]\nprobes:\n  - tp:net:netif_rx\n";

    #[test]
    fn defaults_apply_once_nothing_is_given() {
        let r = request(&[], &[]).unwrap();
        assert_eq!(r.snaplen, DEFAULT_SNAPLEN);
        assert_eq!(r.collectors, DEFAULT_COLLECTORS);
        let specs: Vec<ProbeSpec> = DEFAULT_PROBES
            .iter()
            .map(|s| ProbeSpec::parse(s).unwrap())
            .collect();
        assert_eq!(r.specs, specs);
    }

    #[test]
    fn a_profile_sets_what_the_command_line_leaves_open() {
        let r = request(&["-P", "small"], &[("small", SMALL)]).unwrap();
        assert_eq!(r.snaplen, 128);
        assert_eq!(r.collectors, [Collector::Dev, Collector::Packet]);
        assert_eq!(r.specs, [ProbeSpec::parse("tp:skb:kfree_skb").unwrap()]);
    }

    /// Every option a profile may set: an explicit value, even the default one, wins.
    #[test]
    fn explicit_flags_win_over_profiles_even_at_their_default() {
        let r = request(&["--snaplen", "256", "-P", "small"], &[("small", SMALL)]).unwrap();
        assert_eq!(r.snaplen, 256, "--snaplen 256 is kept");
        assert_eq!(r.collectors, [Collector::Dev, Collector::Packet]);

        let r = request(
            &[
                "--collectors",
                "skb,dev,netns,ct,tracking,packet",
                "-P",
                "small",
            ],
            &[("small", SMALL)],
        )
        .unwrap();
        assert_eq!(r.collectors, DEFAULT_COLLECTORS, "--collectors kept");
        assert_eq!(r.snaplen, 128);

        let r = request(
            &["-P", "small", "--snaplen", "1000", "--collectors", "ct"],
            &[("small", SMALL)],
        )
        .unwrap();
        assert_eq!((r.snaplen, r.collectors), (1000, vec![Collector::Ct]));
    }

    #[test]
    fn the_first_profile_that_sets_an_option_wins() {
        let profiles = [("small", SMALL), ("other", OTHER)];
        let r = request(&["-P", "small", "-P", "other"], &profiles).unwrap();
        assert_eq!((r.snaplen, r.collectors.len()), (128, 2));
        let r = request(&["-P", "other", "-P", "small"], &profiles).unwrap();
        assert_eq!((r.snaplen, r.collectors), (64, vec![Collector::Skb]));
        // Probes add up: profiles in order, then -p.
        let r = request(
            &["-P", "other", "-P", "small", "-p", "tp:net:net_dev_xmit"],
            &profiles,
        )
        .unwrap();
        let targets: Vec<&str> = r.specs.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(
            targets,
            ["net:netif_rx", "skb:kfree_skb", "net:net_dev_xmit"]
        );
    }

    #[test]
    fn profile_values_are_checked_when_used() {
        let huge = [("huge", "snaplen: 100000\nprobes: [tp:net:netif_rx]\n")];
        assert_eq!(request(&["-P", "huge"], &huge).unwrap().snaplen, 65535);
        let bad = [(
            "bad",
            "collectors: [skb, nope]\nprobes: [tp:net:netif_rx]\n",
        )];
        let err = request(&["-P", "bad"], &bad).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown collector 'nope'"),
            "{err:#}"
        );
        // Not used: an explicit --collectors leaves the profile's alone.
        assert!(request(&["-P", "bad", "--collectors", "skb"], &bad).is_ok());
        assert!(request(&["-P", "missing"], &[]).is_err());
    }

    #[test]
    fn profile_probes_follow_their_conditions() {
        let text = "probes:\n  - probe: tp:net:netif_rx\n    kernel: '>=6.10'\n  - probe: tp:net:netif_receive_skb\n    kernel: '<6.10'\n  - probe: k:br_handle_frame\n    symbol: br_handle_frame\n  - ip_rcv\n  - ip_local_deliver\n  - k:tcp_*\n";
        let r = request(&["-P", "c"], &[("c", text)]).unwrap();
        let targets: Vec<&str> = r.specs.iter().map(|s| s.target.as_str()).collect();
        // ip_local_deliver: a function the kernel's symbols do not list; a glob always stays.
        assert_eq!(targets, ["net:netif_rx", "ip_rcv", "tcp_*"]);
    }

    #[test]
    fn durations_parse_like_every_tool() {
        assert_eq!(args(&["--duration", "2"]).duration, Some(2.0));
        assert_eq!(args(&["--duration", "500ms"]).duration, Some(0.5));
        for bad in ["-1", "inf", "2x"] {
            let line = ["trail-capture", "--duration", bad];
            assert!(Args::try_parse_from(line).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn nonsense_limits_are_usage_errors() {
        for line in [&["--duration", "0"][..], &["--count", "0"]] {
            let err = request(line, &[]).unwrap_err();
            assert!(
                err.downcast_ref::<UsageError>().is_some(),
                "{line:?}: {err}"
            );
        }
    }

    /// The defaults live in this module; `--help` shows them, so the two must agree.
    #[test]
    fn help_shows_the_plan_defaults() {
        let help = Args::command().render_help().to_string();
        let collectors: Vec<String> = DEFAULT_COLLECTORS
            .iter()
            .map(|c| {
                clap::ValueEnum::to_possible_value(c)
                    .expect("named")
                    .get_name()
                    .to_string()
            })
            .collect();
        let shown = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for default in [
            format!("kept [default: {DEFAULT_SNAPLEN}]"),
            format!("[default: {}]", collectors.join(",")),
        ] {
            assert!(shown.contains(&default), "{default} in {help}");
        }
    }

    fn tracepoint(group: &str, name: &str, skb: usize, reason: Option<usize>) -> Tracepoint {
        Tracepoint {
            group: group.into(),
            name: name.into(),
            args: 4,
            skb: Some(skb),
            drop_reason: reason,
        }
    }

    fn function(name: &str, skb: usize) -> Function {
        Function {
            name: name.into(),
            module: None,
            btf_id: 1,
            args: 2,
            skb: Some(skb),
            ret: (4, true),
        }
    }

    fn features(kprobes: bool, trampolines: bool, paged: bool, cookies: bool) -> Features {
        let works = |yes: bool| if yes { Ok(()) } else { Err("no".to_string()) };
        Features {
            kprobes,
            kprobe_multi: kprobes,
            trampolines: works(trampolines),
            raw_tp_cookies: cookies,
            paged_tracepoints: works(paged),
        }
    }

    fn plan(line: &[&str], features: &Features) -> anyhow::Result<Plan> {
        let tracepoints = [
            tracepoint("net", "netif_receive_skb", 0, None),
            tracepoint("net", "net_dev_start_xmit", 0, None),
            tracepoint("skb", "kfree_skb", 0, Some(2)),
        ];
        let functions = [
            function("ip_rcv", 0),
            function("skb_free_head", 0),
            function("kfree_skbmem", 0),
        ];
        let targets = Targets {
            tracepoints: &tracepoints,
            functions: &functions,
            traceable: None,
            features,
        };
        let request = request(line, &[])?;
        let track_ends = request.track_ends(args(line).no_tracking_ends, features);
        Plan::new(&request, &targets, track_ends, &mut |_| {})
    }

    #[test]
    fn tracepoints_are_placed_by_what_the_kernel_offers() {
        // This kernel: tp_btf with paged reads, no kprobes, no trampolines.
        let here = plan(&[], &features(false, false, true, true)).unwrap();
        assert_eq!(
            here.placements,
            [
                Placement::Instance(vec!["tp_btf_skb_at_0".into()]),
                Placement::Instance(vec!["tp_btf_skb_at_0".into()]),
            ]
        );
        assert!(here.programs.is_empty() && here.track_ends.is_empty());
        // --no-paged with raw_tp cookies: one shared program in the primary object.
        let shared = plan(&[], &features(false, false, false, true)).unwrap();
        assert_eq!(shared.programs, ["skb_at_0"]);
        // No cookies: one raw_tp instance per probe.
        let old = plan(
            &["-p", "tp:skb:kfree_skb"],
            &features(false, false, false, false),
        );
        assert_eq!(
            old.unwrap().placements,
            [Placement::Instance(vec!["skb_at_0_reason_at_2".into()])]
        );
    }

    #[test]
    fn functions_and_tracking_ends_are_placed() {
        let kprobes = features(true, false, false, true);
        let p = plan(&["-p", "kr:ip_rcv"], &kprobes).unwrap();
        assert_eq!(
            p.placements[0],
            Placement::Primary(vec![
                "kmulti_ret_entry_at_0".into(),
                "kmulti_ret_skb".into()
            ])
        );
        assert_eq!(p.track_ends, ["k:skb_free_head", "k:kfree_skbmem"]);
        assert_eq!(p.public().count(), 1);
        use types::trail_probe_flag as F;
        let head = &p.probes[1];
        assert_eq!(
            Plan::probe_flags(head),
            F::TRAIL_PROBE_END_HEAD.0 | F::TRAIL_PROBE_END_ALWAYS.0
        );
        assert_eq!(
            p.programs,
            [
                "kmulti_ret_entry_at_0",
                "kmulti_ret_skb",
                "kprobe_track_end_at_0"
            ]
        );
        let fentry = features(false, true, false, true);
        let p = plan(&["-p", "ip_rcv/stack"], &fentry).unwrap();
        assert_eq!(
            p.placements[0],
            Placement::Instance(vec!["fentry_skb_at_0".into()])
        );
        assert_eq!(Plan::probe_flags(&p.probes[0]), F::TRAIL_PROBE_STACK.0);
        assert!(p.stacks());
        let none = plan(&["--no-tracking-ends"], &fentry).unwrap();
        assert!(none.track_ends.is_empty());
        let untracked = plan(&["--collectors", "skb"], &fentry).unwrap();
        assert!(untracked.track_ends.is_empty());
        // A function probe where neither kind works is a usage error.
        let err = plan(&["-p", "ip_rcv"], &features(false, false, true, true)).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
    }

    #[test]
    fn object_config_follows_the_request() {
        let r = request(&["--snaplen", "100", "--collectors", "dev,tracking"], &[]).unwrap();
        let config = ObjectConfig::new(&r, 64 << 20, 3, 42, 2);
        let record = std::mem::size_of::<types::trail_event>() as u32 + 100 + STACK_BYTES;
        use types::trail_collector as C;
        assert_eq!(
            (
                config.rodata.snaplen,
                config.rodata.collectors,
                config.rodata.record_max,
                config.rodata.wakeup_bytes,
                config.rodata.selectors,
                config.rodata.select_pid,
            ),
            (
                100,
                C::TRAIL_C_DEV.0 | C::TRAIL_C_TRACKING.0,
                record,
                1 << 20,
                3,
                42
            )
        );
        assert_eq!(config.scratch_entries, 2 * NEST_LEVELS);
        assert_eq!(
            config.pending_entries,
            ((64 << 20) / record).clamp(64, 4096)
        );
        let small = ObjectConfig::new(&r, 4096, 0, 0, 1);
        assert_eq!((small.rodata.wakeup_bytes, small.ring_bytes), (512, 4096));
    }
}
