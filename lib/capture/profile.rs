//! Profiles: named probe sets and options in YAML (`trail-capture -P NAME`).
//!
//! A profile is a file `NAME.yaml`:
//!
//! ```yaml
//! description: One line shown by --list-profiles
//! snaplen: 128                 # optional: used when --snaplen is not given
//! collectors: [skb, dev, tracking, packet]   # optional: likewise for --collectors
//! probes:
//!   - tp:net:netif_receive_skb # a probe spec, as with -p
//!   - probe: ip_rcv            # or a map with conditions:
//!     kernel: ">=5.10"         #   kernel release comparison (>=, >, <=, <, =)
//!     symbol: ip_rcv           #   a symbol /proc/kallsyms must list
//! ```
//!
//! Contract: options merge in [`super::plan::Request::new`]: a flag given on the command line
//! wins, else the first profile that sets the option, else the default. Probes whose conditions
//! fail are left out; a function probe (any kind but `tp`) without a glob is also left out when
//! the kernel has no such symbol, so one profile serves kernels of different versions. Profiles are searched, first match wins, in
//! `$TRAIL_PROFILE_PATH` (colon-separated directories), `$XDG_CONFIG_HOME/trail/profiles`
//! (default `~/.config/trail/profiles`), `/etc/trail/profiles`, `/usr/share/trail/profiles`, and
//! last the profiles shipped in the repository's `profiles/` (compiled into the binary).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::probe::ProbeSpec;
use super::Collector;
use crate::model::error::UsageError;
use crate::model::event::ProbeKind;

/// Profiles shipped with trail (`profiles/*.yaml`), compiled in.
const SHIPPED: &[(&str, &str)] = &[
    ("generic", include_str!("../../profiles/generic.yaml")),
    ("ifdump", include_str!("../../profiles/ifdump.yaml")),
    ("dropmon", include_str!("../../profiles/dropmon.yaml")),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub snaplen: Option<u32>,
    #[serde(default)]
    pub collectors: Option<Vec<String>>,
    #[serde(default)]
    pub probes: Vec<Entry>,
}

/// One probe of a profile: a spec, or a spec with conditions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Spec(String),
    Conditional {
        probe: String,
        #[serde(default)]
        kernel: Option<String>,
        #[serde(default)]
        symbol: Option<String>,
    },
}

/// Directories searched for `NAME.yaml`, in order.
fn search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("TRAIL_PROFILE_PATH")
        .map(|p| {
            p.split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(config) = config {
        dirs.push(config.join("trail/profiles"));
    }
    dirs.push("/etc/trail/profiles".into());
    dirs.push("/usr/share/trail/profiles".into());
    dirs
}

/// Where profile `name` comes from, and its text.
fn source(name: &str) -> Option<(String, String)> {
    for dir in search_path() {
        let file = dir.join(format!("{name}.yaml"));
        if let Ok(text) = fs::read_to_string(&file) {
            return Some((file.display().to_string(), text));
        }
    }
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| (format!("(shipped) profiles/{n}.yaml"), text.to_string()))
}

/// Parses a profile's YAML; `origin` names it in errors.
pub fn parse(origin: &str, text: &str) -> anyhow::Result<Profile> {
    serde_yaml::from_str(text).map_err(|e| UsageError(format!("profile {origin}: {e}")).into())
}

/// Finds and parses profile `name`.
pub fn find(name: &str) -> anyhow::Result<Profile> {
    if name.is_empty() || name.contains('/') {
        return Err(UsageError(format!("bad profile name '{name}'")).into());
    }
    let (origin, text) = source(name).ok_or_else(|| {
        UsageError(format!(
            "no profile '{name}' (searched {} and the shipped ones; see --list-profiles)",
            search_path()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    parse(&origin, &text)
}

/// `--list-profiles`: every profile found, with its origin and description.
pub fn list() -> anyhow::Result<()> {
    let mut names: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
    for dir in search_path() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if let Some(name) = file.strip_suffix(".yaml") {
                    names.push(name.to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    let mut out = std::io::stdout().lock();
    for name in names {
        let Some((origin, text)) = source(&name) else {
            continue;
        };
        match parse(&origin, &text) {
            Ok(profile) => writeln!(
                out,
                "{name}\t{}\t({} probes; {origin})",
                profile.description,
                profile.probes.len()
            )?,
            Err(err) => writeln!(out, "{name}\tinvalid: {err:#}")?,
        }
    }
    Ok(out.flush()?)
}

/// Kernel release `6.12.117+deb12-amd64` → (6, 12, 117).
pub fn release_version(release: &str) -> Option<(u32, u32, u32)> {
    let mut parts = release.split(['.', '-', '+']).map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Whether `release` satisfies a condition such as `>=6.1` or `<6.10`.
pub fn kernel_matches(condition: &str, release: &str) -> anyhow::Result<bool> {
    let condition = condition.trim();
    let (op, version) = ["=>", ">=", "<=", ">", "<", "="]
        .iter()
        .find_map(|op| condition.strip_prefix(op).map(|v| (*op, v.trim())))
        .unwrap_or(("=", condition));
    let want = release_version(version)
        .ok_or_else(|| UsageError(format!("bad kernel condition '{condition}'")))?;
    let have = release_version(release)
        .ok_or_else(|| anyhow::anyhow!("cannot parse the kernel release '{release}'"))?;
    Ok(match op {
        ">=" | "=>" => have >= want,
        ">" => have > want,
        "<=" => have <= want,
        "<" => have < want,
        _ => have == want,
    })
}

/// What profile conditions are judged against: the kernel release and its symbols.
#[derive(Debug, Default, Clone)]
pub struct Host {
    /// `uname -r`.
    pub release: String,
    /// Names listed by /proc/kallsyms (empty when unreadable: then no function is left out
    /// for lack of a symbol).
    pub symbols: HashSet<String>,
}

impl Host {
    /// The running kernel's.
    pub fn read() -> Host {
        let (_, release) = super::kernel::uname();
        let symbols = fs::read_to_string("/proc/kallsyms")
            .map(|text| {
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Host { release, symbols }
    }
}

impl Profile {
    /// The probes `host` gets.
    pub fn probes(&self, host: &Host) -> anyhow::Result<Vec<ProbeSpec>> {
        let symbols = &host.symbols;
        let mut specs = Vec::new();
        for entry in &self.probes {
            let (text, kernel, symbol) = match entry {
                Entry::Spec(text) => (text, None, None),
                Entry::Conditional {
                    probe,
                    kernel,
                    symbol,
                } => (probe, kernel.as_deref(), symbol.as_deref()),
            };
            if let Some(condition) = kernel {
                if !kernel_matches(condition, &host.release)? {
                    continue;
                }
            }
            if symbol.is_some_and(|s| !symbols.contains(s)) {
                continue;
            }
            let spec = ProbeSpec::parse(text)?;
            if spec.kind != ProbeKind::Tracepoint
                && !spec.is_pattern()
                && !symbols.is_empty()
                && !symbols.contains(&spec.target)
            {
                continue;
            }
            specs.push(spec);
        }
        Ok(specs)
    }

    /// The profile's `collectors`, if it sets them; an unknown name is a usage error.
    pub fn collectors(&self) -> anyhow::Result<Option<Vec<Collector>>> {
        let Some(names) = &self.collectors else {
            return Ok(None);
        };
        let collectors = names
            .iter()
            .map(|n| {
                <Collector as clap::ValueEnum>::from_str(n, true)
                    .map_err(|_| UsageError(format!("profile: unknown collector '{n}'")))
            })
            .collect::<Result<_, _>>()
            .context("profile collectors")?;
        Ok(Some(collectors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(release_version("6.12.117+deb12-amd64"), Some((6, 12, 117)));
        assert_eq!(release_version("6.1.0-50-amd64"), Some((6, 1, 0)));
        assert_eq!(release_version("6.18"), Some((6, 18, 0)));
        assert!(kernel_matches(">=6.10", "6.12.117+deb12-amd64").unwrap());
        assert!(!kernel_matches(">=6.10", "6.1.0-50-amd64").unwrap());
        assert!(kernel_matches("<6.2", "6.1.0-50-amd64").unwrap());
        assert!(kernel_matches("bogus", "6.1.0").is_err());
    }

    #[test]
    fn shipped_profiles_parse() {
        for (name, text) in SHIPPED {
            let profile = parse(name, text).unwrap();
            assert!(!profile.probes.is_empty(), "{name}");
            for entry in &profile.probes {
                let text = match entry {
                    Entry::Spec(t) => t,
                    Entry::Conditional { probe, .. } => probe,
                };
                ProbeSpec::parse(text).unwrap();
            }
        }
    }
}
