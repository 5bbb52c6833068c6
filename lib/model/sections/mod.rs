//! The sections of an event, one file each, and the one list of them ([`with_sections!`]).
//!
//! A section module holds everything that is that section's own: its owned serde type (what the
//! stream and `--json` carry), its borrowed view (what trail-print reads in place), how the view
//! is read from the canonical MessagePack, its JSON object, its text pieces and its Parquet
//! columns. [`with_sections!`] lists the sections in stream order; `Event`, `SECTIONS`,
//! `Event::section_count` (`model::event`), `EventView` and its parser (`model::view`), the
//! printer's `--fields` switches and JSON dispatch (`print`) and, through `Event`'s JSON Schema,
//! the filter's field table are all expanded from that list, so none of them names a section.
//!
//! Why in the model layer (and not a `lib/sections/` above it): `Event` is made of these types
//! and every layer reads it, model included (codec, view, synth, dissect), so the types must sit
//! at the bottom; splitting each section across layers is what this module ends. The renderings
//! use only the primitives of [`text`], [`json`] and [`parquet`], which live here too, so the
//! model reaches into no stage. What is not a section's stays with its stage: I/O, options, and
//! the two layouts that interleave sections (where each piece goes on an event's text lines, in
//! `print`; the Parquet column order, in `to_parquet::columns`).
//!
//! Contract of a module `m` listed as `field in m: Owned, View;`:
//! - `Owned`: `#[serde(default)]` on the struct, optional fields skipped when `None`; its field
//!   order is the stream's key order and its doc comments are the published JSON Schema's;
//! - `View<'a>`: the borrowed view (a type alias of `Owned` when there is nothing to borrow);
//! - `m::view(&Owned) -> View` and `m::json(&mut Vec<u8>, &View)` name every field (no `..`), so
//!   a field added to `Owned` does not compile until both handle it;
//! - `m::parse(&mut Cursor) -> Option<View>`: the view of the canonical encoding, `None` for
//!   anything else (contract in `model::view`), built from the primitives of `view::Cursor`;
//! - `m::COLUMNS`: its Parquet columns (placed in the file by `to_parquet::columns`);
//! - text pieces (`m::text`, ...) that print's layout calls.
//!
//! The lists expand with these functions named for every section, so a module that lacks one
//! does not compile; print's layout destructures `EventView` without `..`, so a new section does
//! not compile until it has a place in the text.

pub mod json;
pub mod parquet;
pub mod text;

pub mod common;
pub mod conntrack;
pub mod dev;
pub mod drop;
pub mod netns;
pub mod nft;
pub mod packet;
pub mod probe;
pub mod retval;
pub mod skb;
pub mod stack;
pub mod tracking;

/// The sections of an event in stream order (the order serde writes an `Event`'s keys): each
/// as `field in module: Owned, View;`, the field name being the section's key in the stream.
/// Invokes the macro `$callback` with the list; doc comments are those of the `Event` field.
macro_rules! with_sections {
    ($callback:ident) => {
        $callback! {
            common in common: Common, CommonView;
            probe in probe: Probe, ProbeView;
            packet in packet: Packet, PacketView;
            skb in skb: Skb, SkbView;
            dev in dev: Dev, DevView;
            netns in netns: Netns, NetnsView;
            drop in drop: Drop, DropView;
            tracking in tracking: Tracking, TrackingView;
            ct in conntrack: Conntrack, ConntrackView;
            nft in nft: Nft, NftView;
            stack in stack: Stack, StackView;
            /// Return value of the probed function (kretprobe, fexit).
            retval in retval: Retval, RetvalView;
        }
    };
}
pub(crate) use with_sections;
