//! The compiled BPF object (`bpf/capture.bpf.c`) through its libbpf-rs skeleton: configuring it,
//! loading only the programs the probes need, attaching them with the probe id as cookie, and
//! reading the per-probe counters.

#![allow(clippy::all, clippy::pedantic)]

mod skel {
    include!(concat!(env!("OUT_DIR"), "/capture.skel.rs"));
}

pub use skel::types;
pub use skel::{CaptureSkel, CaptureSkelBuilder, OpenCaptureSkel};
