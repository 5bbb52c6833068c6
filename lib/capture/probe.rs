//! Probe specs (`[KIND:]TARGET[/OPTS]`) and the tracepoints this kernel offers.
//!
//! Contract: [`ProbeSpec::parse`] accepts the grammar and nothing else (a bad spec is a
//! [`UsageError`]); [`resolve`] turns specs into concrete tracepoints using the kernel's BTF
//! alone for argument positions (`btf_trace_<name>`: first parameter `void *`, then the
//! tracepoint's arguments) and tracefs only for the group names. No per-tracepoint code: any
//! tracepoint with a `struct sk_buff *` argument is a valid probe.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use libbpf_rs::btf::types::{Enum, Enum64, FuncProto, Ptr, Typedef};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, ReferencesType};

use crate::error::UsageError;
use crate::event::ProbeKind;

/// One `-p` argument, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    /// Tracepoint `group:name` (globs allowed), or a function name for the other kinds.
    pub target: String,
    /// Per-probe option `stack`: collect the kernel stack.
    pub stack: bool,
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
        })
    }

    fn is_pattern(&self) -> bool {
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

/// A probe ready to attach: the tracepoint, its options, and its id (the BPF cookie).
#[derive(Clone, Debug)]
pub struct Probe {
    pub id: u32,
    pub tracepoint: Tracepoint,
    pub stack: bool,
}

impl Probe {
    /// The probe in the user's syntax: `tp:net:netif_receive_skb`.
    pub fn spec(&self) -> String {
        format!("tp:{}", self.tracepoint.full_name())
    }

    /// Whether the kernel frees the skb right after this tracepoint (ends its tracking id).
    pub fn frees_skb(&self) -> bool {
        matches!(self.tracepoint.name.as_str(), "kfree_skb" | "consume_skb")
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

/// Tracepoint name → group, from tracefs. Mounts tracefs on a private temporary directory when
/// it is not mounted anywhere (and unmounts it), so the host's mounts are left as they were.
fn tracefs_groups() -> anyhow::Result<BTreeMap<String, String>> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let events = Path::new(dir).join("events");
        if events.is_dir() {
            return read_groups(&events);
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
    let groups = read_groups(&temp.path().join("events"));
    // SAFETY: `target` is a valid NUL-terminated path we mounted above.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    groups
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

/// Shell-style glob with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn matches(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], t) || (!t.is_empty() && matches(p, &t[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &t[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), text.as_bytes())
}

/// Whether a tracepoint matches a target `group:name` or `name` (globs allowed).
pub fn target_matches(target: &str, tp: &Tracepoint) -> bool {
    match target.split_once(':') {
        Some((group, name)) => glob(group, &tp.group) && glob(name, &tp.name),
        None => glob(target, &tp.name),
    }
}

/// Why a non-tracepoint probe cannot run here, checked before anything is loaded.
pub fn unsupported_kind(spec: &ProbeSpec, btf: &Btf<'_>) -> String {
    let kprobe_pmu = Path::new("/sys/bus/event_source/devices/kprobe");
    let what = format!("{}:{}", spec.kind.marker(), spec.target);
    match spec.kind {
        ProbeKind::Kprobe | ProbeKind::Kretprobe => {
            if kprobe_pmu.exists() {
                format!("{what}: kprobe probes are not implemented by this trail-capture yet")
            } else {
                format!(
                    "{what}: this kernel has no kprobes (no kprobe PMU at {}; CONFIG_KPROBES is not set)",
                    kprobe_pmu.display()
                )
            }
        }
        _ => {
            let func = btf
                .type_by_name::<libbpf_rs::btf::types::Func<'_>>(&spec.target)
                .map(|f| f.type_id());
            match func {
                None => format!("{what}: no function '{}' in the kernel BTF", spec.target),
                Some(id) => match super::kernel::fentry_loads(u32::from(id)) {
                    Ok(()) => format!("{what}: fentry/fexit probes are not implemented by this trail-capture yet"),
                    Err(err) => format!(
                        "{what}: this kernel refuses fentry/fexit programs (BPF_PROG_LOAD of a test fentry program: {err}); BPF trampolines are unavailable"
                    ),
                },
            }
        }
    }
}

/// Turns specs into probes (ids in order). Exact names must exist and have an skb argument;
/// patterns skip tracepoints without one, with a warning each, and must match something usable.
pub fn resolve(
    specs: &[ProbeSpec],
    all: &[Tracepoint],
    btf: &Btf<'_>,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<Probe>> {
    let mut probes: Vec<Probe> = Vec::new();
    let mut seen = BTreeSet::new();
    for spec in specs {
        if spec.kind != ProbeKind::Tracepoint {
            return Err(UsageError(unsupported_kind(spec, btf)).into());
        }
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
        let mut usable = 0;
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
            usable += 1;
            if let Some(existing) = probes.iter_mut().find(|p| p.tracepoint == *tp) {
                existing.stack |= spec.stack;
                continue;
            }
            if !seen.insert(tp.full_name()) {
                continue;
            }
            let id = probes.len() as u32;
            if id as usize >= super::MAX_PROBES {
                return Err(
                    UsageError(format!("too many probes (at most {})", super::MAX_PROBES)).into(),
                );
            }
            probes.push(Probe {
                id,
                tracepoint: tp.clone(),
                stack: spec.stack,
            });
        }
        if usable == 0 {
            return Err(UsageError(format!(
                "probe 'tp:{}' matches no tracepoint with a struct sk_buff argument",
                spec.target
            ))
            .into());
        }
    }
    Ok(probes)
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

/// The `btf` file this module reads (for error messages and the BTF check).
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Opens the kernel BTF, with a clear error when the kernel has none.
pub fn kernel_btf() -> anyhow::Result<Btf<'static>> {
    if !PathBuf::from(VMLINUX_BTF).exists() {
        bail!("this kernel has no BTF ({VMLINUX_BTF} is missing; CONFIG_DEBUG_INFO_BTF is needed)");
    }
    Btf::from_vmlinux().with_context(|| format!("cannot read the kernel BTF at {VMLINUX_BTF}"))
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
