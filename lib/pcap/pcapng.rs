//! pcapng as trail writes and reads it: the block writer, and the codec of the custom options
//! that carry trail records inside pcapng blocks (written by [`super::export`], read back by
//! [`super::import`]; format in the export module's header).

use std::io::{self, Write};

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;

use crate::model::codec::{FrameKind, MAGIC};
use crate::model::event::Header;

/// Private Enterprise Number in our custom options: RFC 5612's documentation number, standing in
/// until trail registers its own (see the module header).
pub const TRAIL_PEN: u32 = 32473;
/// pcapng custom option codes: UTF-8 / binary, copyable / not copyable. We write
/// [`OPT_CUSTOM_BINARY_COPY`]; readers accept all four.
pub const OPT_CUSTOM_UTF8_COPY: u16 = 2988;
pub const OPT_CUSTOM_BINARY_COPY: u16 = 2989;
pub const OPT_CUSTOM_UTF8_NOCOPY: u16 = 19372;
pub const OPT_CUSTOM_BINARY_NOCOPY: u16 = 19373;
/// Largest payload chunk per custom option: the option length (u16) covers the PEN (4), our
/// prefix (magic 6 + version 2 + tag 1) and the chunk.
pub(crate) const CHUNK: usize = u16::MAX as usize - 4 - 9;
/// libpcap's largest snapshot length; it rejects packets with more captured bytes.
pub const MAX_SNAPLEN: u32 = 262_144;

/// One packet as an Enhanced Packet Block sees it.
pub struct NgPacket<'a> {
    pub interface_id: u32,
    pub timestamp_ns: u64,
    pub orig_len: u32,
    pub data: &'a [u8],
    pub flags: Option<u32>,
    pub comment: &'a str,
}

/// pcapng block encoder. pcap-file 2.0 cannot write custom options (their type sits in a private
/// module) and serializes every block twice to learn its length; pcapng blocks are simple enough
/// to lay out here, into one reused buffer, little-endian. pcap-file's reader checks the result
/// in the tests.
pub struct NgWriter<W> {
    out: W,
    block: Vec<u8>,
}

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const OPT_COMMENT: u16 = 1;

impl<W: Write> NgWriter<W> {
    pub fn new(out: W) -> NgWriter<W> {
        NgWriter {
            out,
            block: Vec::with_capacity(4096),
        }
    }

    pub fn section_header(
        &mut self,
        header: &Header,
        version: (u8, u8),
        payload: &[u8],
    ) -> io::Result<()> {
        self.begin(SHB);
        self.u32(0x1A2B_3C4D);
        self.block.extend_from_slice(&1u16.to_le_bytes());
        self.block.extend_from_slice(&0u16.to_le_bytes());
        // Section length unknown: we stream.
        self.block.extend_from_slice(&(-1i64).to_le_bytes());
        let comment = format!(
            "trail-to-pcap output; first trail section from {} on host {}, clock {} offset {} ns",
            or_unknown(&header.tool),
            or_unknown(&header.host),
            or_unknown(&header.clock.source),
            header.clock.realtime_offset_ns
        );
        self.text_option(OPT_COMMENT, &comment);
        if !header.kernel.is_empty() {
            self.text_option(3, &format!("Linux {}", header.kernel));
        }
        self.text_option(4, concat!("trail-to-pcap ", env!("CARGO_PKG_VERSION")));
        self.custom_options(version, FrameKind::Header, payload);
        self.end()
    }

    pub fn interface(&mut self, linktype: u32, name: &str, description: &str) -> io::Result<()> {
        self.begin(IDB);
        // The link type field is 16 bits in an IDB.
        self.block
            .extend_from_slice(&(linktype as u16).to_le_bytes());
        self.block.extend_from_slice(&[0, 0]);
        self.u32(MAX_SNAPLEN);
        self.text_option(2, name);
        self.text_option(3, description);
        // if_tsresol 9: timestamps in ns.
        self.option(9, &[9]);
        self.end()
    }

    /// An EPB; the first packet of each trail section also carries the section's header.
    pub fn packet(
        &mut self,
        packet: &NgPacket,
        header: Option<((u8, u8), &[u8])>,
        version: (u8, u8),
        event: &[u8],
    ) -> io::Result<()> {
        self.begin(EPB);
        self.u32(packet.interface_id);
        self.u32((packet.timestamp_ns >> 32) as u32);
        self.u32(packet.timestamp_ns as u32);
        self.u32(packet.data.len() as u32);
        self.u32(packet.orig_len);
        self.padded(packet.data);
        if let Some(flags) = packet.flags {
            // epb_flags
            self.option(2, &flags.to_le_bytes());
        }
        self.text_option(OPT_COMMENT, packet.comment);
        if let Some((header_version, header)) = header {
            self.custom_options(header_version, FrameKind::Header, header);
        }
        self.custom_options(version, FrameKind::Event, event);
        self.end()
    }

    fn begin(&mut self, block_type: u32) {
        self.block.clear();
        self.u32(block_type);
        // Total length, patched by `end`.
        self.u32(0);
    }

    fn u32(&mut self, value: u32) {
        self.block.extend_from_slice(&value.to_le_bytes());
    }

    fn padded(&mut self, bytes: &[u8]) {
        self.block.extend_from_slice(bytes);
        let pad = (4 - bytes.len() % 4) % 4;
        self.block.extend_from_slice(&[0u8; 3][..pad]);
    }

    /// One option; `value` must fit the u16 length (callers bound it).
    fn option(&mut self, code: u16, value: &[u8]) {
        self.block.extend_from_slice(&code.to_le_bytes());
        self.block
            .extend_from_slice(&(value.len() as u16).to_le_bytes());
        self.padded(value);
    }

    fn text_option(&mut self, code: u16, text: &str) {
        let mut end = text.len().min(u16::MAX as usize);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.option(code, &text.as_bytes()[..end]);
    }

    /// `payload` as custom options, chunked (see the module header). An empty payload still gets
    /// one option, so that the record is not lost.
    fn custom_options(&mut self, version: (u8, u8), kind: FrameKind, payload: &[u8]) {
        let mut rest = payload;
        loop {
            let (chunk, tail) = rest.split_at(rest.len().min(CHUNK));
            let len = 4 + 9 + chunk.len();
            self.block
                .extend_from_slice(&OPT_CUSTOM_BINARY_COPY.to_le_bytes());
            self.block.extend_from_slice(&(len as u16).to_le_bytes());
            self.u32(TRAIL_PEN);
            self.block.extend_from_slice(&MAGIC);
            self.block
                .extend_from_slice(&[version.0, version.1, kind.tag()]);
            self.block.extend_from_slice(chunk);
            self.block.extend_from_slice(&[0u8; 3][..(4 - len % 4) % 4]);
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
    }

    /// Closes the block (end-of-options, lengths) and writes it.
    fn end(&mut self) -> io::Result<()> {
        // opt_endofopt
        self.block.extend_from_slice(&[0, 0, 0, 0]);
        let len = (self.block.len() + 4) as u32;
        self.block[4..8].copy_from_slice(&len.to_le_bytes());
        self.u32(len);
        self.out.write_all(&self.block)
    }
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "?"
    } else {
        text
    }
}

/// A trail record recovered from a pcapng block's custom options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarriedRecord {
    /// `Header` or `Event`.
    pub kind: FrameKind,
    /// Format version of the section the record came from.
    pub version: (u8, u8),
    /// The record's MessagePack payload, byte for byte as trail-to-pcap read it.
    pub payload: Vec<u8>,
}

/// What an Enhanced Packet Block written by trail-to-pcap carries: its event and, on the first
/// packet of each trail section, that section's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarriedEvent {
    pub header: Option<CarriedRecord>,
    pub event: CarriedRecord,
}

/// Reassembles the trail records carried by one block's options, given as
/// `(option code, PEN, custom data after the PEN)`, in block order. Consecutive options with the
/// same tag and version are chunks of one record. Options that are not ours are ignored.
pub fn records_from_custom_options<'a>(
    options: impl IntoIterator<Item = (u16, u32, &'a [u8])>,
) -> Result<Vec<CarriedRecord>, String> {
    let mut records: Vec<CarriedRecord> = Vec::new();
    for (code, pen, data) in options {
        let custom = matches!(
            code,
            OPT_CUSTOM_UTF8_COPY
                | OPT_CUSTOM_BINARY_COPY
                | OPT_CUSTOM_UTF8_NOCOPY
                | OPT_CUSTOM_BINARY_NOCOPY
        );
        if !custom || pen != TRAIL_PEN || data.len() < 9 || data[..6] != MAGIC {
            continue;
        }
        let version = (data[6], data[7]);
        let kind = match data[8] {
            b'H' => FrameKind::Header,
            b'E' => FrameKind::Event,
            tag => {
                return Err(format!(
                    "trail custom option with unexpected record tag {tag:#04x}"
                ))
            }
        };
        match records.last_mut() {
            Some(last) if last.kind == kind && last.version == version => {
                last.payload.extend_from_slice(&data[9..])
            }
            _ => records.push(CarriedRecord {
                kind,
                version,
                payload: data[9..].to_vec(),
            }),
        }
    }
    Ok(records)
}

/// The event (and section header) carried by an Enhanced Packet Block, if trail-to-pcap wrote it.
pub fn event_from_custom_options(
    options: &[EnhancedPacketOption],
) -> Result<Option<CarriedEvent>, String> {
    let records = records_from_custom_options(options.iter().filter_map(|o| match o {
        EnhancedPacketOption::CustomBinary(c) => Some((c.code, c.pen, &c.value[..])),
        EnhancedPacketOption::CustomUtf8(c) => Some((c.code, c.pen, c.value.as_bytes())),
        _ => None,
    }))?;
    let mut records = records.into_iter();
    match (records.next(), records.next(), records.next()) {
        (None, ..) => Ok(None),
        (Some(event), None, _) if event.kind == FrameKind::Event => Ok(Some(CarriedEvent {
            header: None,
            event,
        })),
        (Some(header), Some(event), None)
            if header.kind == FrameKind::Header && event.kind == FrameKind::Event =>
        {
            Ok(Some(CarriedEvent {
                header: Some(header),
                event,
            }))
        }
        _ => Err("packet block carries trail records other than [header,] event".into()),
    }
}

/// The trail header carried by a Section Header Block (the output's first section), if
/// trail-to-pcap wrote it.
pub fn header_from_custom_options(
    options: &[SectionHeaderOption],
) -> Result<Option<CarriedRecord>, String> {
    let records = records_from_custom_options(options.iter().filter_map(|o| match o {
        SectionHeaderOption::CustomBinary(c) => Some((c.code, c.pen, &c.value[..])),
        SectionHeaderOption::CustomUtf8(c) => Some((c.code, c.pen, c.value.as_bytes())),
        _ => None,
    }))?;
    let mut records = records.into_iter();
    match (records.next(), records.next()) {
        (None, _) => Ok(None),
        (Some(header), None) if header.kind == FrameKind::Header => Ok(Some(header)),
        _ => Err("section header block carries trail records other than one header".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::linktype;

    #[test]
    fn custom_options_round_trip_in_chunks() {
        let long: Vec<u8> = (0..200_003u32).map(|i| i as u8).collect();
        for payload in [&long[..], &[][..], &[0x80][..]] {
            let mut writer = NgWriter::new(Vec::new());
            writer
                .section_header(&Header::default(), (1, 0), &long)
                .expect("SHB");
            writer
                .interface(linktype::ETHERNET, "eth0", "test")
                .expect("IDB");
            let packet = NgPacket {
                interface_id: 0,
                timestamp_ns: 1_700_000_000_123_456_789,
                orig_len: 5,
                data: &[1, 2, 3],
                flags: Some(1), // inbound
                comment: "comment",
            };
            writer
                .packet(&packet, Some(((1, 0), &long[..1000])), (1, 0), payload)
                .expect("EPB");
            let mut reader = pcap_file::pcapng::PcapNgReader::new(&writer.out[..])
                .expect("pcap-file reads our SHB");
            let header = header_from_custom_options(&reader.section().options)
                .expect("valid")
                .expect("present");
            assert_eq!(header.payload, long);
            let mut epbs = 0;
            while let Some(block) = reader.next_block() {
                let block = block.expect("pcap-file reads our blocks");
                if let pcap_file::pcapng::Block::EnhancedPacket(epb) = block {
                    epbs += 1;
                    assert_eq!(epb.data.as_ref(), packet.data);
                    assert_eq!(epb.original_len, packet.orig_len);
                    assert_eq!(epb.timestamp.as_nanos(), u128::from(packet.timestamp_ns));
                    // flags, comment, header, event chunks
                    let header_chunks = 1;
                    assert_eq!(
                        epb.options.len(),
                        2 + header_chunks + payload.len().div_ceil(CHUNK).max(1)
                    );
                    let carried = event_from_custom_options(&epb.options)
                        .expect("valid")
                        .expect("present");
                    assert_eq!(carried.event.payload, payload);
                    assert_eq!(carried.event.version, (1, 0));
                    assert_eq!(carried.event.kind, FrameKind::Event);
                    assert_eq!(carried.header.expect("header").payload, &long[..1000]);
                }
            }
            assert_eq!(epbs, 1);
        }
        assert_eq!(event_from_custom_options(&[]).expect("valid"), None);
    }
}
