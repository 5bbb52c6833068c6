//! trail: trace packets through the Linux networking stack and take the trace apart with
//! pipelines. Every tool in `bins/` is a thin wrapper over a module here. The folders are the
//! layers (`docs/architecture.md`); a module uses only its own layer and the ones listed before
//! it:
//!
//! - [`model`]: what a stream is: the event model, the framed MessagePack codec, borrowed views,
//!   typed errors, packet dissection and the packet fingerprint.
//! - [`cli`]: what every tool shares: the exit helper, inputs, outputs, argument parsers.
//! - [`expr`]: the expression language of `trail-filter` and `trail-capture -m` (lexer, parser,
//!   syntax tree, did-you-mean, the kernel dialect check), libpcap compilation, and the one glob
//!   of every probe pattern.
//! - [`print`]: events for people (text and JSON lines); `trail-print`.
//! - [`filter`]: selecting events by expression (`trail-filter`).
//! - [`journeys`]: journeys: merging inputs, `trail-sort`, `trail-track`, the external sort.
//! - [`pcap`]: stream to pcap/pcapng and back (`trail-to-pcap`, `trail-from-pcap`).
//! - [`to_parquet`]: stream to Parquet files and datasets (`trail-to-parquet`).
//! - [`capture`]: eBPF capture (`trail-capture`) and its in-kernel selection ([`capture::kfilter`]).

pub mod capture;
pub mod cli;
pub mod expr;
pub mod filter;
pub mod journeys;
pub mod model;
pub mod pcap;
pub mod print;
pub mod to_parquet;
