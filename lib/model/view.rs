//! A borrowed view of an event, read straight from its MessagePack payload: what stages that only
//! look at events (trail-print) use instead of decoding the owned [`Event`].
//!
//! Why: decoding an owned `Event` through rmp-serde allocates every string and byte field and
//! checks every map key as UTF-8; for `trail-print` that was half of its time (bench/results.md).
//! [`EventView::parse`] walks the payload once with a cursor over marker bytes, matches keys as
//! bytes and borrows strings and packet bytes from the payload.
//!
//! Contract: a view means exactly what the owned event means, and there is one decoder of record,
//! serde's. `parse` takes the canonical encoding (what `codec::encode` writes: named maps with the
//! known keys, each once, strings, `bin`, integers, nil for absent options) and returns `None` for
//! anything else: an unknown key or section, a repeated key, any other encoding serde might
//! accept, or corruption. The caller then decodes the owned `Event` with serde (whose rules
//! decide, and whose errors are reported) and views it with [`EventView::from`]. Whenever `parse`
//! returns a view, it equals the view of serde's decode; `tests/print.rs` checks this on random
//! and mutated payloads. Sections made of numbers only (`skb`, `netns`) reuse the owned types.
//!
//! Each section's view type and its parser live in the section's file (`model::sections`);
//! [`EventView`] and its dispatch are expanded from the list of sections. This module keeps the
//! reading primitives ([`Cursor`], `walk_map!`) that the section parsers share.

use crate::model::event::Event;
use crate::model::msgpack;
use crate::model::sections::with_sections;

pub use crate::model::sections::common::CommonView;
pub use crate::model::sections::conntrack::{ConntrackView, CtTupleView};
pub use crate::model::sections::dev::DevView;
pub use crate::model::sections::drop::DropView;
pub use crate::model::sections::nft::NftView;
pub use crate::model::sections::packet::PacketView;
pub use crate::model::sections::probe::ProbeView;
pub use crate::model::sections::stack::{StackFrameView, StackView};
pub use crate::model::sections::tracking::TrackingView;

/// `EventView`, its view of an owned event and its parser, from the list of sections.
macro_rules! define_view {
    ($($(#[$doc:meta])* $field:ident in $module:ident: $Owned:ident, $View:ident;)*) => {
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct EventView<'a> {
            $(pub $field: Option<$crate::model::sections::$module::$View<'a>>,)*
        }

        /// The view of an owned event. Each section's `view` names every field (no `..`): a
        /// field added to the event model does not compile until the view has it too.
        impl<'a> From<&'a Event> for EventView<'a> {
            fn from(event: &'a Event) -> Self {
                let Event { $($field),* } = event;
                EventView {
                    $($field: $field.as_ref().map($crate::model::sections::$module::view),)*
                }
            }
        }

        impl<'a> EventView<'a> {
            /// The view of an event payload in the canonical encoding; `None` for anything else
            /// (see the module header: decode the owned [`Event`] then).
            pub fn parse(payload: &'a [u8]) -> Option<EventView<'a>> {
                let c = &mut Cursor(msgpack::Cursor::new(payload));
                let mut v = EventView::default();
                walk_map!(c, {
                    $(stringify!($field).as_bytes() =>
                        v.$field = c.option($crate::model::sections::$module::parse)?,)*
                });
                c.0.is_empty().then_some(v)
            }
        }
    };
}

/// Reads a map whose keys must all be among the given names, each at most once, parsing each
/// value with its expression. Any other key, a repeat, or a value `?` rejects: `None`.
macro_rules! walk_map {
    ($c:ident, { $($name:expr => $parse:expr,)* }) => {{
        let mut seen = 0u32;
        for _ in 0..$c.map_len()? {
            let key = $c.str_bytes()?;
            let mut bit = 1u32;
            $(
                if key == $name {
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    $parse;
                    continue;
                }
                bit <<= 1;
            )*
            let _ = bit;
            return None;
        }
    }};
}
pub(crate) use walk_map;

with_sections!(define_view);

/// A read position in a payload: the one reader's cursor ([`crate::model::msgpack`]), seen as
/// `Option`s. Every method consumes one whole value of the shape it names, or returns `None`
/// (and the parse is abandoned, so the position then does not matter).
pub(crate) struct Cursor<'a>(msgpack::Cursor<'a>);

impl<'a> Cursor<'a> {
    /// Bytes left: a bound on how many values can follow.
    pub(crate) fn left(&self) -> usize {
        self.0.rest().len()
    }

    pub(crate) fn map_len(&mut self) -> Option<u64> {
        self.0.map_len().ok().map(u64::from)
    }

    pub(crate) fn array_len(&mut self) -> Option<usize> {
        self.0.array_len().ok().map(|n| n as usize)
    }

    /// A string's bytes, unchecked: map keys, compared with known ASCII names.
    pub(crate) fn str_bytes(&mut self) -> Option<&'a [u8]> {
        self.0.str_bytes().ok()
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        self.0.str().ok()
    }

    pub(crate) fn bin(&mut self) -> Option<&'a [u8]> {
        self.0.bin().ok()
    }

    pub(crate) fn bool(&mut self) -> Option<bool> {
        self.0.bool().ok()
    }

    /// Any integer that is not negative (serde takes a signed encoding of a value in range).
    pub(crate) fn uint(&mut self) -> Option<u64> {
        self.0.uint().ok()
    }

    pub(crate) fn int(&mut self) -> Option<i64> {
        self.0.int().ok()
    }

    /// An unsigned integer that fits `T` (serde rejects one that does not).
    pub(crate) fn num<T: TryFrom<u64>>(&mut self) -> Option<T> {
        self.0.num().ok()
    }

    /// nil as `None`, anything else read by `value`.
    pub(crate) fn option<T>(
        &mut self,
        value: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if self.0.nil() {
            return Some(None);
        }
        value(self).map(Some)
    }
}
