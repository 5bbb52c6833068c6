//! trail: trace packets through the Linux networking stack and take the trace apart with
//! pipelines. Every tool in `bins/` is a thin wrapper over a module here.
//!
//! - [`event`]: the event model (sections of a record);
//! - [`codec`]: the framed MessagePack stream (spec in `schemas/stream.md`);
//! - [`cli`]: what every tool shares (inputs, outputs, exit status);
//! - [`dissect`], [`print`]: packets and events for people; [`view`]: events read in place;
//! - [`pcap_import`]: pcap/pcapng to stream;
//! - [`capture`]: eBPF capture of packet events (trail-capture).
//! - [`kfilter`]: pcap-filter expressions translated to eBPF for in-kernel selection.
//! - [`filter`]: selecting events by expression (`trail-filter`).
//! - [`journey`], [`sort`], [`track`], [`extsort`]: journeys (trail-sort, trail-track).
//! - [`pcap_export`], [`pcap_import`]: stream to pcap/pcapng and back.
//! - [`to_parquet`]: stream to Parquet files and datasets.

pub mod capture;
pub mod cli;
pub mod codec;
pub mod dissect;
pub mod error;
pub mod event;
pub mod extsort;
pub mod filter;
pub mod fingerprint;
pub mod journey;
pub mod kfilter;
pub mod pcap_export;
pub mod pcap_import;
pub mod print;
pub mod sort;
pub mod synth;
pub mod to_parquet;
pub mod track;
pub mod view;
