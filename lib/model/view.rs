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
                let c = &mut Cursor {
                    buf: payload,
                    at: 0,
                };
                let mut v = EventView::default();
                walk_map!(c, {
                    $(stringify!($field).as_bytes() =>
                        v.$field = c.option($crate::model::sections::$module::parse)?,)*
                });
                (c.at == payload.len()).then_some(v)
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

/// A read position in a payload. Every method consumes one whole value of the shape it names, or
/// returns `None` (and the parse is abandoned, so the position then does not matter).
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.buf.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let bytes = self.buf.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    /// A big-endian unsigned number of `len` bytes (MessagePack's byte order).
    fn be(&mut self, len: usize) -> Option<u64> {
        Some(
            self.take(len)?
                .iter()
                .fold(0u64, |value, &b| (value << 8) | u64::from(b)),
        )
    }

    pub(crate) fn map_len(&mut self) -> Option<u64> {
        match self.byte()? {
            marker @ 0x80..=0x8f => Some(u64::from(marker & 0x0f)),
            0xde => self.be(2),
            0xdf => self.be(4),
            _ => None,
        }
    }

    pub(crate) fn array_len(&mut self) -> Option<usize> {
        match self.byte()? {
            marker @ 0x90..=0x9f => Some(usize::from(marker & 0x0f)),
            0xdc => self.be(2).map(|n| n as usize),
            0xdd => self.be(4).map(|n| n as usize),
            _ => None,
        }
    }

    /// A string's bytes, unchecked: map keys, compared with known ASCII names.
    pub(crate) fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => u64::from(marker & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return None,
        };
        self.take(usize::try_from(len).ok()?)
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    pub(crate) fn bin(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            0xc4 => self.be(1)?,
            0xc5 => self.be(2)?,
            0xc6 => self.be(4)?,
            _ => return None,
        };
        self.take(usize::try_from(len).ok()?)
    }

    pub(crate) fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0xc2 => Some(false),
            0xc3 => Some(true),
            _ => None,
        }
    }

    /// Any integer that is not negative (serde takes a signed encoding of a value in range).
    pub(crate) fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            marker @ 0x00..=0x7f => Some(u64::from(marker)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            0xd0..=0xd3 => {
                self.at -= 1;
                self.int().and_then(|v| u64::try_from(v).ok())
            }
            _ => None,
        }
    }

    pub(crate) fn int(&mut self) -> Option<i64> {
        match self.byte()? {
            marker @ (0x00..=0x7f | 0xe0..=0xff) => Some(i64::from(marker as i8)),
            0xcc => self.be(1).map(|v| v as i64),
            0xcd => self.be(2).map(|v| v as i64),
            0xce => self.be(4).map(|v| v as i64),
            0xcf => self.be(8).and_then(|v| i64::try_from(v).ok()),
            0xd0 => self.be(1).map(|v| i64::from(v as u8 as i8)),
            0xd1 => self.be(2).map(|v| i64::from(v as u16 as i16)),
            0xd2 => self.be(4).map(|v| i64::from(v as u32 as i32)),
            0xd3 => self.be(8).map(|v| v as i64),
            _ => None,
        }
    }

    /// An unsigned integer that fits `T` (serde rejects one that does not).
    pub(crate) fn num<T: TryFrom<u64>>(&mut self) -> Option<T> {
        T::try_from(self.uint()?).ok()
    }

    /// nil as `None`, anything else read by `value`.
    pub(crate) fn option<T>(
        &mut self,
        value: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if *self.buf.get(self.at)? == 0xc0 {
            self.at += 1;
            return Some(None);
        }
        value(self).map(Some)
    }
}
