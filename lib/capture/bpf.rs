//! The compiled BPF object (`bpf/capture.bpf.c`) through its libbpf-rs skeleton, and the
//! constants it shares with user space. Those are C enums in `bpf/include/capture.h`, read
//! back from the skeleton's generated `types` (`types::trail_event_flag::TRAIL_F_PACKET.0`):
//! nothing is copied by hand, so a change on the C side reaches Rust at the next build.

#![allow(clippy::all, clippy::pedantic)]

mod skel {
    include!(concat!(env!("OUT_DIR"), "/capture.skel.rs"));
}

pub use skel::types;
pub use skel::{CaptureSkel, CaptureSkelBuilder, OpenCaptureSkel};

use types::trail_limit;

/// Probes per run: ids are indices below this.
pub const MAX_PROBES: usize = trail_limit::TRAIL_MAX_PROBES.0 as usize;
/// Scratch records per CPU: task, softirq, hardirq, NMI.
pub const NEST_LEVELS: u32 = trail_limit::TRAIL_NEST_LEVELS.0;
/// Room for the kernel stack after the packet bytes of a record.
pub const STACK_BYTES: u32 = trail_limit::TRAIL_STACK_BYTES.0;
/// Largest `--snaplen`.
pub const SNAPLEN_MAX: u32 = trail_limit::TRAIL_SNAPLEN_MAX.0;
