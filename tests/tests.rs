//! Tier-1 integration tests: the real binaries over fixtures and synthetic streams, no
//! privileges needed. One test binary, one module per area.

mod common;
mod dissect;
mod expr;
mod filter;
mod journeys;
mod kfilter;
mod kmeta;
mod parquet;
mod print;
mod profiles;
mod stream;
mod synth;
mod to_pcap;
