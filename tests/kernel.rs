//! Kernel tests (root): BPF programs loaded for real, traffic in network namespaces. One module
//! per area under `tests/kernel/`. Run with `cargo test --test kernel -- --test-threads=1`.
//!
//! Without root they print a skip line, except under `CI=true`, where they fail: CI must never
//! pass by skipping them.

#[path = "common/mod.rs"]
mod common;

#[path = "kernel/capture.rs"]
mod capture;
#[path = "kernel/journeys.rs"]
mod journeys;
#[path = "kernel/kfilter.rs"]
mod kfilter;
#[path = "kernel/kprobes.rs"]
mod kprobes;
#[path = "kernel/netns.rs"]
mod netns;
#[path = "kernel/select.rs"]
mod select;
