//! trail-capture profiles without privileges: listing (shipped and user profiles), a user
//! profile overriding a shipped one, and refusals of unknown or malformed profiles before any
//! privilege check or BPF work.

use std::process::Command;

use super::common::bin;

fn capture(args: &[&str], profile_dir: &std::path::Path) -> std::process::Output {
    Command::new(bin("trail-capture"))
        .args(args)
        .env("TRAIL_PROFILE_PATH", profile_dir)
        .env("XDG_CONFIG_HOME", profile_dir.join("no-such-config"))
        .output()
        .expect("run trail-capture")
}

#[test]
fn list_profiles_shows_shipped_and_user_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.yaml"),
        "description: my own set\nprobes:\n  - tp:net:netif_rx\n  - probe: k:ip_rcv\n    kernel: '>=5.10'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ifdump.yaml"),
        "description: overridden here\nprobes:\n  - tp:net:netif_rx\n",
    )
    .unwrap();
    let out = capture(&["--list-profiles"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} listed: {text}"))
            .to_string()
    };
    assert!(line("generic").contains("(shipped) profiles/generic.yaml"));
    assert!(line("dropmon").contains("1 probes"));
    let mine = line("mine");
    assert!(
        mine.contains("my own set") && mine.contains("2 probes"),
        "{mine}"
    );
    // The user directory comes first.
    assert!(line("ifdump").contains("overridden here"), "{text}");
}

#[test]
fn unknown_or_bad_profiles_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "probes: [tp:net:x\n").unwrap();
    std::fs::write(
        dir.path().join("typo.yaml"),
        "prbes:\n  - tp:net:netif_rx\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("badkind.yaml"),
        "probes:\n  - zz:net:x:y:z\n",
    )
    .unwrap();
    for (name, expect) in [
        ("no-such-profile", "no profile 'no-such-profile'"),
        ("broken", "profile "),
        ("typo", "unknown field"),
        ("badkind", "bad probe"),
    ] {
        let out = capture(&["-P", name], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.starts_with("trail-capture: error: ") && stderr.contains(expect),
            "{name}: {stderr}"
        );
    }
}
