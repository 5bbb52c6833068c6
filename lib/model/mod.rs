//! The model layer: what a trail stream is, independent of any tool. Everything above it (cli,
//! the stages, capture) reads and writes streams through these modules only.
//!
//! - [`event`]: the event model (sections of a record) and the stream's format version;
//! - [`sections`]: the sections of an event, one file each, and the one list of them;
//! - [`codec`]: the framed MessagePack stream (spec in `schemas/stream.md`);
//! - [`msgpack`]: the one MessagePack reader (read, skip, look up, splice in place);
//! - [`view`]: events read in place, without allocation;
//! - [`error`]: typed errors for bad input and usage, with input name and byte offset;
//! - [`dissect`], [`fingerprint`]: packet bytes into layers, and a packet's identity;
//! - [`probe`]: what a probe name says about the packet (end of life);
//! - [`synth`]: synthetic streams for tests and benchmarks.

pub mod codec;
pub mod dissect;
pub mod error;
pub mod event;
pub mod fingerprint;
pub mod msgpack;
pub mod probe;
pub mod sections;
pub mod synth;
pub mod view;
