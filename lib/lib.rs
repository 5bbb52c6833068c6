//! trail: trace packets through the Linux networking stack and take the trace apart with
//! pipelines. Every tool in `bins/` is a thin wrapper over a module here.
//!
//! - [`event`]: the event model (sections of a record);
//! - [`codec`]: the framed MessagePack stream (spec in `schemas/stream.md`);
//! - [`cli`]: what every tool shares (inputs, outputs, exit status);
//! - [`dissect`], [`print`]: packets and events for people;
//! - [`pcap_import`]: pcap/pcapng to stream;
//! - [`kfilter`]: pcap-filter expressions translated to eBPF for in-kernel selection.

pub mod cli;
pub mod codec;
pub mod dissect;
pub mod error;
pub mod event;
pub mod kfilter;
pub mod pcap_import;
pub mod print;
pub mod synth;
