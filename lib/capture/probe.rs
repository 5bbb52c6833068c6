//! Probe specs (`[KIND:]TARGET[/OPTS]`) and the tracepoints this kernel offers.
//!
//! Contract: [`ProbeSpec::parse`] accepts the grammar and nothing else (a bad spec is a
//! [`UsageError`]); [`resolve`] turns specs into concrete tracepoints using the kernel's BTF
//! alone for argument positions (`btf_trace_<name>`: first parameter `void *`, then the
//! tracepoint's arguments) and tracefs only for the group names. No per-tracepoint code: any
//! tracepoint with a `struct sk_buff *` argument is a valid probe.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::Context;
use libbpf_rs::btf::types::{Enum, Enum64, FuncProto, Ptr, Typedef};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, ReferencesType};

use super::bpf::types::trail_probe_flag;
use super::functions::{Features, Function, KPROBE_PMU};
use super::kernel::with_tracefs;
use crate::model::error::UsageError;
use crate::model::event::ProbeKind;
use crate::model::probe::END_OF_LIFE_TRACEPOINTS;

/// One `-p` argument, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    /// Tracepoint `group:name` (globs allowed), or a function name for the other kinds.
    pub target: String,
    /// Per-probe option `stack`: collect the kernel stack.
    pub stack: bool,
    /// No KIND was given for a function: the kind is chosen by what the kernel offers
    /// ([`default_kind`]); `kind` then says `Kprobe`.
    pub default_kind: bool,
}

impl ProbeSpec {
    /// Parses `[KIND:]TARGET[/OPTS]`. Without a kind, `group:name` is a tracepoint and a bare
    /// name a kprobe (as in Retis).
    pub fn parse(text: &str) -> Result<ProbeSpec, UsageError> {
        let bad = |why: &str| UsageError(format!("bad probe '{text}': {why}"));
        let (body, opts) = match text.split_once('/') {
            Some((body, opts)) => (body, Some(opts)),
            None => (text, None),
        };
        let default_kind = !body.contains(':');
        let (kind, target) = match body.split_once(':') {
            Some((prefix, rest)) => match prefix {
                "tp" => (ProbeKind::Tracepoint, rest),
                "k" | "kprobe" => (ProbeKind::Kprobe, rest),
                "kr" | "kretprobe" => (ProbeKind::Kretprobe, rest),
                "f" | "fentry" => (ProbeKind::Fentry, rest),
                "fx" | "fexit" => (ProbeKind::Fexit, rest),
                _ => (ProbeKind::Tracepoint, body),
            },
            None => (ProbeKind::Kprobe, body),
        };
        if target.is_empty() {
            return Err(bad("empty target"));
        }
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?' | '.'))
        };
        match kind {
            ProbeKind::Tracepoint => {
                let parts: Vec<&str> = target.split(':').collect();
                if parts.len() > 2 || !parts.iter().all(|p| valid(p)) {
                    return Err(bad("a tracepoint is GROUP:NAME (globs * and ? allowed)"));
                }
            }
            _ => {
                if !valid(target) {
                    return Err(bad("a function name has only letters, digits, '_' and '.'"));
                }
            }
        }
        let mut stack = false;
        if let Some(opts) = opts {
            for opt in opts.split(',') {
                match opt {
                    "stack" => stack = true,
                    other => return Err(bad(&format!("unknown option '{other}' (known: stack)"))),
                }
            }
        }
        Ok(ProbeSpec {
            kind,
            target: target.to_string(),
            stack,
            default_kind,
        })
    }

    pub fn is_pattern(&self) -> bool {
        self.target.contains(['*', '?'])
    }
}

/// A tracepoint of the running kernel, as BTF and tracefs describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracepoint {
    /// tracefs group (`net`), empty when tracefs does not list the tracepoint.
    pub group: String,
    pub name: String,
    /// Number of tracepoint arguments (without the leading `void *`).
    pub args: usize,
    /// Position of the first `struct sk_buff *` argument.
    pub skb: Option<usize>,
    /// Position of an `enum skb_drop_reason` argument.
    pub drop_reason: Option<usize>,
}

impl Tracepoint {
    /// `group:name` as probes and events name it.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.group, self.name)
    }
}

/// What a probe is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tracepoint(Tracepoint),
    Function(Function),
}

/// A probe ready to attach: kind, target, options, and its id (the BPF cookie or the rodata
/// `fixed_probe` of its instance).
#[derive(Clone, Debug)]
pub struct Probe {
    pub id: u32,
    pub kind: ProbeKind,
    pub target: Target,
    pub stack: bool,
    /// Internal tracking end point (`TRAIL_PROBE_END_*` flags): emits no event, is not listed
    /// in the stream header or trailer.
    pub track_end: u32,
    /// Matched by a wildcard: failing to attach it skips it (with a warning) instead of
    /// failing the run.
    pub optional: bool,
}

impl Probe {
    /// Tracepoint `group:name` or function name, as events name it.
    pub fn name(&self) -> String {
        match &self.target {
            Target::Tracepoint(tp) => tp.full_name(),
            Target::Function(f) => f.name.clone(),
        }
    }

    /// The probe in the user's syntax: `tp:net:netif_receive_skb`, `f:ip_rcv`.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.kind.marker(), self.name())
    }

    /// Position of the skb argument.
    pub fn skb(&self) -> Option<usize> {
        match &self.target {
            Target::Tracepoint(tp) => tp.skb,
            Target::Function(f) => f.skb,
        }
    }

    /// Whether the kernel frees the skb right after this tracepoint (ends its tracking id).
    pub fn frees_skb(&self) -> bool {
        matches!(&self.target, Target::Tracepoint(tp) if END_OF_LIFE_TRACEPOINTS.contains(&tp.name.as_str()))
    }

    pub fn is_internal(&self) -> bool {
        self.track_end != 0
    }
}

/// Reads every tracepoint from the kernel BTF, with its group from tracefs.
pub fn tracepoints(btf: &Btf<'_>) -> anyhow::Result<Vec<Tracepoint>> {
    let groups = tracefs_groups().unwrap_or_default();
    let mut out = Vec::new();
    for typedef in btf.type_by_kind::<Typedef<'_>>() {
        let Some(name) = typedef.name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(name) = name.strip_prefix("btf_trace_") else {
            continue;
        };
        let Some(proto) = Ptr::try_from(typedef.referenced_type().skip_mods_and_typedefs())
            .ok()
            .and_then(|ptr| {
                FuncProto::try_from(ptr.referenced_type().skip_mods_and_typedefs()).ok()
            })
        else {
            continue;
        };
        let params: Vec<BtfType<'_>> = proto
            .iter()
            .skip(1)
            .filter_map(|param| btf.type_by_id::<BtfType<'_>>(param.ty))
            .collect();
        let skb = params
            .iter()
            .position(|ty| points_to_struct(*ty, "sk_buff"));
        let drop_reason = params.iter().position(|ty| {
            let ty = ty.skip_mods_and_typedefs();
            matches!(ty.kind(), BtfKind::Enum | BtfKind::Enum64)
                && ty.name().and_then(|n| n.to_str()) == Some("skb_drop_reason")
        });
        out.push(Tracepoint {
            group: groups.get(name).cloned().unwrap_or_default(),
            name: name.to_string(),
            args: params.len(),
            skb,
            drop_reason,
        });
    }
    out.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    Ok(out)
}

fn points_to_struct(ty: BtfType<'_>, name: &str) -> bool {
    let Ok(ptr) = Ptr::try_from(ty.skip_mods_and_typedefs()) else {
        return false;
    };
    let pointee = ptr.referenced_type().skip_mods_and_typedefs();
    pointee.kind() == BtfKind::Struct && pointee.name().and_then(|n| n.to_str()) == Some(name)
}

/// Tracepoint name → group, from tracefs.
fn tracefs_groups() -> anyhow::Result<BTreeMap<String, String>> {
    with_tracefs(|dir| read_groups(&dir.join("events")))
}

fn read_groups(events: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut groups = BTreeMap::new();
    for group in
        fs::read_dir(events).with_context(|| format!("cannot read {}", events.display()))?
    {
        let group = group?;
        if !group.file_type()?.is_dir() {
            continue;
        }
        let group_name = group.file_name().to_string_lossy().into_owned();
        for event in fs::read_dir(group.path())? {
            let event = event?;
            if event.file_type()?.is_dir() {
                groups
                    .entry(event.file_name().to_string_lossy().into_owned())
                    .or_insert_with(|| group_name.clone());
            }
        }
    }
    Ok(groups)
}

/// The glob of every probe pattern (`crate::expr::glob`): `*`, `?` and `[...]` classes.
pub fn glob(pattern: &str, text: &str) -> bool {
    crate::expr::glob::matches(pattern, text)
}

/// Whether a tracepoint matches a target `group:name` or `name` (globs allowed).
pub fn target_matches(target: &str, tp: &Tracepoint) -> bool {
    match target.split_once(':') {
        Some((group, name)) => glob(group, &tp.group) && glob(name, &tp.name),
        None => glob(target, &tp.name),
    }
}

/// Why a kind of function probe cannot run here (`None`: it can).
pub fn missing_feature(kind: ProbeKind, what: &str, features: &Features) -> Option<String> {
    match kind {
        ProbeKind::Kprobe | ProbeKind::Kretprobe if !features.kprobes => Some(format!(
            "{what}: this kernel has no kprobes (no kprobe PMU at {KPROBE_PMU}; CONFIG_KPROBES is not set)"
        )),
        ProbeKind::Fentry | ProbeKind::Fexit => features.trampolines.as_ref().err().map(|err| {
            format!(
                "{what}: this kernel refuses fentry/fexit programs (BPF_PROG_LOAD of a test fentry program: {err}); BPF trampolines are unavailable"
            )
        }),
        _ => None,
    }
}

/// The kernel's probe targets: tracepoints, and (when a function probe asks for them) its
/// functions, which of them are traceable, and the features of each kind.
pub struct Targets<'a> {
    pub tracepoints: &'a [Tracepoint],
    pub functions: &'a [Function],
    /// From `available_filter_functions`; `None` when unreadable (then every BTF function is
    /// tried, and the kernel says no at attach).
    pub traceable: Option<&'a std::collections::HashMap<String, u32>>,
    pub features: &'a Features,
}

/// The highest skb position the programs read (x86-64 and arm64 register arguments).
pub const MAX_SKB_POSITION: usize = 5;

/// Turns specs into probes (ids in order). Exact names must exist and have an skb argument;
/// patterns skip targets without one, with a warning, and must match something usable.
pub fn resolve(
    specs: &[ProbeSpec],
    targets: &Targets<'_>,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<Probe>> {
    let mut probes: Vec<Probe> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |probes: &mut Vec<Probe>, probe: Probe| -> anyhow::Result<()> {
        if let Some(existing) = probes
            .iter_mut()
            .find(|p| p.kind == probe.kind && p.target == probe.target)
        {
            existing.stack |= probe.stack;
            existing.optional &= probe.optional;
            return Ok(());
        }
        if !seen.insert(probe.spec()) {
            return Ok(());
        }
        if probes.len() >= super::bpf::MAX_PROBES {
            return Err(UsageError(format!(
                "too many probes (at most {})",
                super::bpf::MAX_PROBES
            ))
            .into());
        }
        probes.push(Probe {
            id: probes.len() as u32,
            ..probe
        });
        Ok(())
    };
    for spec in specs {
        if spec.kind == ProbeKind::Tracepoint {
            for tp in resolve_tracepoints(spec, targets.tracepoints, warn)? {
                push(
                    &mut probes,
                    Probe {
                        id: 0,
                        kind: ProbeKind::Tracepoint,
                        target: Target::Tracepoint(tp),
                        stack: spec.stack,
                        track_end: 0,
                        optional: spec.is_pattern(),
                    },
                )?;
            }
        } else {
            let (kind, functions) = resolve_functions(spec, targets, warn)?;
            for function in functions {
                push(
                    &mut probes,
                    Probe {
                        id: 0,
                        kind,
                        target: Target::Function(function),
                        stack: spec.stack,
                        track_end: 0,
                        optional: spec.is_pattern(),
                    },
                )?;
            }
        }
    }
    Ok(probes)
}

fn resolve_tracepoints(
    spec: &ProbeSpec,
    all: &[Tracepoint],
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<Tracepoint>> {
    let matched: Vec<&Tracepoint> = all
        .iter()
        .filter(|tp| !tp.group.is_empty() && target_matches(&spec.target, tp))
        .collect();
    if matched.is_empty() {
        return Err(UsageError(format!(
            "unknown probe 'tp:{}': no such tracepoint (see --list-probes)",
            spec.target
        ))
        .into());
    }
    let mut out = Vec::new();
    for tp in matched {
        if tp.skb.is_none() {
            if spec.is_pattern() {
                warn(format!(
                    "skipping tp:{}: no struct sk_buff argument",
                    tp.full_name()
                ));
                continue;
            }
            return Err(UsageError(format!(
                "probe 'tp:{}' has no struct sk_buff argument: nothing to capture",
                tp.full_name()
            ))
            .into());
        }
        out.push(tp.clone());
    }
    if out.is_empty() {
        return Err(UsageError(format!(
            "probe 'tp:{}' matches no tracepoint with a struct sk_buff argument",
            spec.target
        ))
        .into());
    }
    Ok(out)
}

/// The kind a kind-less function probe gets: fentry where trampolines work (lowest cost), else
/// kprobe. A wildcard prefers kprobes: one program serves every function, while each fentry
/// target costs a program load.
pub fn default_kind(pattern: bool, features: &Features) -> Option<ProbeKind> {
    let fentry = features.trampolines.is_ok();
    match (pattern, fentry, features.kprobes) {
        (false, true, _) => Some(ProbeKind::Fentry),
        (_, _, true) => Some(ProbeKind::Kprobe),
        (true, true, false) => Some(ProbeKind::Fentry),
        _ => None,
    }
}

fn resolve_functions(
    spec: &ProbeSpec,
    targets: &Targets<'_>,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<(ProbeKind, Vec<Function>)> {
    let pattern = spec.is_pattern();
    let kind = if spec.default_kind {
        default_kind(pattern, targets.features).ok_or_else(|| {
            UsageError(format!(
                "{}: this kernel has neither kprobes (no kprobe PMU at {KPROBE_PMU}) nor BPF trampolines ({})",
                spec.target,
                targets.features.trampolines.as_ref().err().map(String::as_str).unwrap_or("")
            ))
        })?
    } else {
        spec.kind
    };
    let what = format!("{}:{}", kind.marker(), spec.target);
    let traceable = |name: &str| targets.traceable.map(|t| t.get(name).copied().unwrap_or(0));
    if !pattern {
        let Some(function) = targets.functions.iter().find(|f| f.name == spec.target) else {
            return Err(UsageError(format!(
                "{what}: no function '{}' in the kernel BTF",
                spec.target
            ))
            .into());
        };
        if let Some(missing) = missing_feature(kind, &what, targets.features) {
            return Err(UsageError(missing).into());
        }
        match function.skb {
            None => {
                return Err(UsageError(format!(
                    "probe '{what}' has no struct sk_buff argument: nothing to capture"
                ))
                .into())
            }
            Some(pos) if pos > MAX_SKB_POSITION => {
                return Err(UsageError(format!(
                    "{what}: its skb is argument {pos}; this build has programs for positions 0 to {MAX_SKB_POSITION}"
                ))
                .into())
            }
            Some(_) => {}
        }
        match traceable(&function.name) {
            Some(0) => {
                return Err(UsageError(format!(
                    "{what}: the kernel cannot probe this function (not in available_filter_functions: inlined or notrace)"
                ))
                .into())
            }
            Some(n) if n > 1 && matches!(kind, ProbeKind::Kprobe | ProbeKind::Kretprobe) => {
                return Err(UsageError(format!(
                    "{what}: {n} kernel functions have this name; a kprobe by name would be ambiguous (try f: or fx:)"
                ))
                .into())
            }
            _ => {}
        }
        return Ok((kind, vec![function.clone()]));
    }
    if let Some(missing) = missing_feature(kind, &what, targets.features) {
        return Err(UsageError(missing).into());
    }
    let mut out: Vec<Function> = Vec::new();
    let mut names = BTreeSet::new();
    let (mut no_skb, mut untraceable) = (0, 0);
    for function in targets
        .functions
        .iter()
        .filter(|f| glob(&spec.target, &f.name))
    {
        if !names.insert(function.name.as_str()) {
            continue;
        }
        if function.skb.is_none_or(|pos| pos > MAX_SKB_POSITION) {
            no_skb += 1;
        } else if traceable(&function.name).is_some_and(|n| n != 1) {
            untraceable += 1;
        } else {
            out.push(function.clone());
        }
    }
    if no_skb + untraceable > 0 {
        warn(format!(
            "{what}: skipping {no_skb} matching functions without a struct sk_buff argument (at positions 0 to {MAX_SKB_POSITION}) and {untraceable} not traceable by name"
        ));
    }
    if out.is_empty() {
        return Err(UsageError(format!(
            "probe '{what}' matches no traceable function with a struct sk_buff argument"
        ))
        .into());
    }
    Ok((kind, out))
}

/// Tracking end points: functions that free an skb's data buffer or the sk_buff itself, with
/// what they free (`TRAIL_PROBE_END_*`). Probed where the kernel has them and lets us.
pub const TRACK_ENDS: &[(&str, u32)] = &[
    ("skb_free_head", END_HEAD.0 | END_ALWAYS.0),
    ("skb_release_data", END_HEAD.0),
    ("kfree_skbmem", END_SKB.0),
    ("kfree_skb_partial", END_SKB.0),
];
const END_HEAD: trail_probe_flag = trail_probe_flag::TRAIL_PROBE_END_HEAD;
const END_ALWAYS: trail_probe_flag = trail_probe_flag::TRAIL_PROBE_END_ALWAYS;
const END_SKB: trail_probe_flag = trail_probe_flag::TRAIL_PROBE_END_SKB;

/// Internal probes for [`TRACK_ENDS`] that this kernel can attach (kprobe, else fentry),
/// appended after `probes`.
pub fn add_track_ends(probes: &mut Vec<Probe>, targets: &Targets<'_>) -> Vec<String> {
    let kind = if targets.features.kprobes {
        ProbeKind::Kprobe
    } else if targets.features.trampolines.is_ok() {
        ProbeKind::Fentry
    } else {
        return Vec::new();
    };
    let mut added = Vec::new();
    for (name, flags) in TRACK_ENDS {
        let Some(function) = targets.functions.iter().find(|f| f.name == *name) else {
            continue;
        };
        let usable = function.skb == Some(0)
            && targets
                .traceable
                .is_none_or(|t| t.get(*name).copied() == Some(1));
        if !usable || probes.len() >= super::bpf::MAX_PROBES {
            continue;
        }
        probes.push(Probe {
            id: probes.len() as u32,
            kind,
            target: Target::Function(function.clone()),
            stack: false,
            track_end: *flags,
            optional: true,
        });
        added.push(format!("{}:{name}", kind.marker()));
    }
    added
}

/// A vmlinux function to try a test fentry program on (trampoline support).
pub fn fentry_test_id(btf: &Btf<'_>) -> Option<u32> {
    [
        "ip_rcv",
        "__netif_receive_skb",
        "kfree_skb_reason",
        "consume_skb",
    ]
    .iter()
    .find_map(|name| {
        btf.type_by_name::<libbpf_rs::btf::types::Func<'_>>(name)
            .map(|f| u32::from(f.type_id()))
    })
}

/// Names of an enum's values from the kernel BTF, by value, with `prefix` removed.
pub fn enum_names(btf: &Btf<'_>, enum_name: &str, prefix: &str) -> BTreeMap<u64, String> {
    let mut names = BTreeMap::new();
    let strip = |n: &str| n.strip_prefix(prefix).unwrap_or(n).to_string();
    if let Some(e) = btf.type_by_name::<Enum<'_>>(enum_name) {
        for member in e.iter() {
            if let Some(name) = member.name.and_then(|n| n.to_str()) {
                names
                    .entry(member.value as u64)
                    .or_insert_with(|| strip(name));
            }
        }
    } else if let Some(e) = btf.type_by_name::<Enum64<'_>>(enum_name) {
        for member in e.iter() {
            if let Some(name) = member.name.and_then(|n| n.to_str()) {
                names
                    .entry(member.value as u64)
                    .or_insert_with(|| strip(name));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let p = ProbeSpec::parse("tp:net:netif_receive_skb/stack").unwrap();
        assert_eq!(
            (p.kind, p.target.as_str(), p.stack),
            (ProbeKind::Tracepoint, "net:netif_receive_skb", true)
        );
        assert_eq!(
            ProbeSpec::parse("skb:kfree_skb").unwrap().kind,
            ProbeKind::Tracepoint
        );
        assert_eq!(ProbeSpec::parse("ip_rcv").unwrap().kind, ProbeKind::Kprobe);
        assert_eq!(
            ProbeSpec::parse("kr:ip_rcv").unwrap().kind,
            ProbeKind::Kretprobe
        );
        assert_eq!(
            ProbeSpec::parse("fx:ip_rcv").unwrap().kind,
            ProbeKind::Fexit
        );
        assert!(ProbeSpec::parse("tp:net:x/bogus").is_err());
        assert!(ProbeSpec::parse("tp:").is_err());
        assert!(ProbeSpec::parse("tp:a:b:c").is_err());
        assert!(ProbeSpec::parse("k:ip rcv").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("net_*", "net_dev_xmit"));
        assert!(glob("n?t", "net"));
        assert!(!glob("net_*", "netif_rx"));
        assert!(glob("*skb*", "kfree_skb"));
    }
}
