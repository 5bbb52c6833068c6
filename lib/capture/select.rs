//! What trail-capture selects in the kernel: the options `-f`, `-m`, `--ifname`, `--mark`,
//! `--netns`, `--pid`, `--no-follow` turned into the programs' `selectors` switch and the
//! filter bodies that [`super::splice`] puts in place of the placeholders of
//! `bpf/capture.bpf.c`. Everything here runs before the object is opened, so every mistake is
//! a usage error before anything is loaded.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libbpf_rs::btf::Btf;
use libbpf_rs::{libbpf_sys, AsRawLibbpf, OpenObject};

use super::bpf::types::trail_selector;
use crate::capture::kfilter::{meta, Insn, PacketFilter};
use crate::model::error::UsageError;

// Selector bits (capture.h `enum trail_selector`).
pub const SEL_PACKET: u32 = trail_selector::TRAIL_SEL_PACKET.0;
pub const SEL_META: u32 = trail_selector::TRAIL_SEL_META.0;
pub const SEL_PID: u32 = trail_selector::TRAIL_SEL_PID.0;
pub const SEL_FOLLOW: u32 = trail_selector::TRAIL_SEL_FOLLOW.0;

/// Names of the placeholder functions in `bpf/capture.bpf.c`.
const FILTER_L2: &str = "trail_filter_l2";
const FILTER_L3: &str = "trail_filter_l3";
const META: &str = "trail_meta";

/// The user's selection options, as trail-capture's arguments carry them.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub filter: Option<String>,
    pub meta: Vec<String>,
    pub ifname: Option<String>,
    pub mark: Option<String>,
    pub netns: Option<String>,
    pub pid: Option<u32>,
    pub no_follow: bool,
}

/// The compiled selection.
#[derive(Debug, Default)]
pub struct Selection {
    pub selectors: u32,
    pub pid: u32,
    pub packet: Option<PacketFilter>,
    /// The meta expression after the shortcuts were folded in, and its body.
    pub meta: Option<(String, Vec<Insn>)>,
}

impl Selection {
    /// Compiles the options. `tracking` says whether the tracking collector runs, which
    /// following a selected packet needs.
    pub fn build(
        options: &Options,
        btf: &Btf<'_>,
        tracking: bool,
        warn: &mut dyn FnMut(String),
    ) -> Result<Selection, UsageError> {
        let mut selection = Selection::default();
        if let Some(expr) = &options.filter {
            let filter = PacketFilter::new(expr).map_err(|e| UsageError(format!("-f: {e}")))?;
            if let Some(note) = &filter.l3_note {
                warn(format!(
                    "-f {expr:?} has no meaning for packets that have no link-layer header yet \
                     (libpcap: {note}); such packets are left out"
                ));
            }
            selection.selectors |= SEL_PACKET;
            selection.packet = Some(filter);
        }
        let mut terms: Vec<String> = options.meta.iter().map(|m| format!("({m})")).collect();
        if let Some(name) = &options.ifname {
            let quoted = meta::quote(name).map_err(|e| UsageError(format!("--ifname: {e}")))?;
            terms.push(format!("skb.dev.name == {quoted}"));
        }
        if let Some(mark) = &options.mark {
            terms.push(mark_term(mark)?);
        }
        if let Some(netns) = &options.netns {
            terms.push(format!(
                "skb.dev.nd_net.net.ns.inum == {}",
                netns_inum(netns)?
            ));
        }
        if !terms.is_empty() {
            let text = terms.join(" && ");
            let body = meta::build(btf, &text).map_err(|e| UsageError(format!("-m: {e}")))?;
            selection.selectors |= SEL_META;
            selection.meta = Some((text, body));
        }
        if let Some(pid) = options.pid {
            selection.selectors |= SEL_PID;
            selection.pid = pid;
        }
        if selection.selectors != 0 && !options.no_follow {
            if tracking {
                selection.selectors |= SEL_FOLLOW;
            } else {
                warn(
                    "without the tracking collector a selected packet is not followed: \
                     each probe judges it anew"
                        .into(),
                );
            }
        }
        Ok(selection)
    }

    /// The bodies to splice, by the BTF type id of their placeholder in the opened object.
    pub fn bodies(&self, object: &OpenObject) -> anyhow::Result<HashMap<u32, Vec<Insn>>> {
        let mut bodies = HashMap::new();
        if self.selectors == 0 {
            return Ok(bodies);
        }
        // SAFETY: the pointer is the open object's own, alive while `object` is borrowed; the
        // BTF it returns belongs to the object.
        let btf = unsafe { libbpf_sys::bpf_object__btf(object.as_libbpf_object().as_ptr()) };
        anyhow::ensure!(!btf.is_null(), "the BPF object has no BTF");
        let id = |name: &str| -> anyhow::Result<u32> {
            let cname = CString::new(name).expect("no NUL");
            // SAFETY: `btf` is valid (checked above) and `cname` is NUL-terminated.
            let id = unsafe {
                libbpf_sys::btf__find_by_name_kind(btf, cname.as_ptr(), libbpf_sys::BTF_KIND_FUNC)
            };
            anyhow::ensure!(id > 0, "the BPF object has no function {name}");
            Ok(id as u32)
        };
        if let Some(filter) = &self.packet {
            bodies.insert(id(FILTER_L2)?, filter.l2.clone());
            bodies.insert(id(FILTER_L3)?, filter.l3.clone());
        }
        if let Some((_, body)) = &self.meta {
            bodies.insert(id(META)?, body.clone());
        }
        Ok(bodies)
    }

    /// One line for `-v`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.packet {
            parts.push(format!(
                "-f {:?}: {}/{} classic -> {}/{} eBPF instructions (Ethernet/raw IP)",
                f.expr,
                f.classic_len.0,
                f.classic_len.1,
                f.l2.len(),
                f.l3.len()
            ));
        }
        if let Some((text, body)) = &self.meta {
            parts.push(format!("-m {text:?}: {} eBPF instructions", body.len()));
        }
        if self.selectors & SEL_PID != 0 {
            parts.push(format!("--pid {}", self.pid));
        }
        if self.selectors & SEL_FOLLOW != 0 {
            parts.push("selected packets followed".into());
        }
        parts.join("; ")
    }
}

/// `VALUE[/MASK]`, numbers in decimal or 0x hex.
fn mark_term(text: &str) -> Result<String, UsageError> {
    let number = |s: &str| -> Result<u64, UsageError> {
        let s = s.trim();
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .ok()
        .filter(|v| *v <= u64::from(u32::MAX))
        .ok_or_else(|| {
            UsageError(format!(
                "--mark {text:?}: expected VALUE[/MASK], 32-bit numbers"
            ))
        })
    };
    Ok(match text.split_once('/') {
        Some((value, mask)) => format!("skb.mark & {} == {}", number(mask)?, number(value)?),
        None => format!("skb.mark == {}", number(text)?),
    })
}

/// A network namespace as its inode number: given as the number itself, as a name under
/// /run/netns (what `ip netns add` creates), or as a path (`/proc/PID/ns/net`).
fn netns_inum(text: &str) -> Result<u64, UsageError> {
    if let Ok(inum) = text.parse::<u64>() {
        return Ok(inum);
    }
    let path = if text.contains('/') {
        Path::new(text).to_path_buf()
    } else {
        Path::new("/run/netns").join(text)
    };
    std::fs::metadata(&path).map(|m| m.ino()).map_err(|e| {
        UsageError(format!(
            "--netns {text:?}: cannot open {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_shortcut() {
        assert_eq!(mark_term("0x10").unwrap(), "skb.mark == 16");
        assert_eq!(mark_term("5/0xff").unwrap(), "skb.mark & 255 == 5");
        assert!(mark_term("x").is_err());
        assert!(mark_term("0x1ffffffff").is_err());
    }

    #[test]
    fn netns_by_number_and_path() {
        assert_eq!(netns_inum("4026531840").unwrap(), 4026531840);
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(netns_inum("/proc/self/ns/net").unwrap(), own);
        let err = netns_inum("no-such-netns-here").unwrap_err().to_string();
        assert!(err.contains("/run/netns/no-such-netns-here"), "{err}");
    }
}
