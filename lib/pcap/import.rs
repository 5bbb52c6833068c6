//! `trail-from-pcap`: pcap and pcapng files (or stdin) to a trail stream.
//!
//! Each input becomes one stream section whose clock is `realtime` (pcap timestamps are wall
//! clock), so imported packets work with every other stage. Each packet becomes an event with
//! probe kind `pcap-import` named after its interface, the file's timestamp (in ns, honouring
//! pcapng's `if_tsresol`), and its bytes, original length and link type.
//!
//! Packets written by `trail-to-pcap` carry their original event and section header in pcapng
//! custom options ([`crate::pcap::export`]): those come back byte for byte, in sections with their
//! original headers (this stage appended), so `to-pcap | from-pcap` is lossless. Other packets
//! of the same file go to a `realtime` import section as above.
//!
//! Inputs are read as a stream with a bounded buffer (a block may be at most [`MAX_BLOCK`]
//! bytes), so stdin pipes work; errors name the input and the byte offset of the bad block.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;

use crate::cli::{self, Output};
use crate::model::codec::{Frame, FrameKind};
use crate::model::error::{ErrorKind, StreamError};
use crate::model::event::{
    linktype, Bytes, Clock, Common, Dev, Event, Header, Layer, Packet, Probe, ProbeKind,
    FORMAT_MAJOR, FORMAT_MINOR,
};
use crate::pcap::pcapng;
use crate::print;

/// Largest pcap record or pcapng block accepted; larger means a corrupt length field.
pub const MAX_BLOCK: usize = 64 << 20;

const TOOL: &str = "trail-from-pcap";

/// Convert pcap or pcapng captures (files or stdin) into a trail event stream, so that offline
/// captures work with every trail stage. Each packet becomes a `pcap-import` event.
#[derive(Debug, clap::Parser)]
#[command(name = "trail-from-pcap", version)]
pub struct Args {
    /// pcap or pcapng files (default: stdin; `-` for stdin).
    pub inputs: Vec<PathBuf>,
    /// Write the stream to FILE (created only when the import succeeds) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Host name to record in the stream header (default: none; the pcap does not say).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut output = Output::create(args.output.as_deref(), print::terminal)?;
    let inputs = if args.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.inputs.clone()
    };
    for path in &inputs {
        import_one(path, args, &mut output)?;
    }
    output.finish()
}

fn import_one(path: &Path, args: &Args, output: &mut Output) -> anyhow::Result<()> {
    let (reader, name): (Box<dyn Read>, String) = if path == Path::new("-") {
        (Box::new(io::stdin().lock()), "stdin".to_string())
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        (Box::new(file), path.display().to_string())
    };
    let mut input = Chunks::new(reader, name);
    let magic = input.peek4()?;
    let header = Header {
        version: (FORMAT_MAJOR, FORMAT_MINOR),
        tool: TOOL.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host: args.host.clone().unwrap_or_default(),
        clock: Clock {
            source: "realtime".into(),
            realtime_offset_ns: 0,
        },
        command: std::env::args().collect(),
        pipeline: vec![cli::this_stage(TOOL)],
        ..Header::default()
    };
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d] => import_pcap(&mut input, header, output),
        [0x0a, 0x0d, 0x0d, 0x0a] => import_pcapng(&mut input, header, output),
        _ => Err(input
            .bad(
                0,
                format!("not a pcap or pcapng file ({})", describe(&magic)),
            )
            .into()),
    }
}

fn describe(magic: &[u8; 4]) -> &'static str {
    if magic[0] == crate::model::codec::MAGIC[0] {
        "it is a trail stream already"
    } else {
        "unknown magic number"
    }
}

fn import_pcap(input: &mut Chunks, mut header: Header, output: &mut Output) -> anyhow::Result<()> {
    let parser = input
        .parse(PcapParser::new)?
        .ok_or_else(|| input.bad(0, "truncated pcap file header".into()))?;
    let file_header = parser.header();
    let link = u32::from(file_header.datalink);
    header.snaplen = file_header.snaplen;
    output.header(&header)?;
    while input.has_more()? {
        match parser.next_packet(input.unparsed()) {
            Ok((rest, packet)) => {
                let used = input.pending() - rest.len();
                let event = packet_event(
                    packet.timestamp.as_nanos(),
                    "pcap",
                    None,
                    link,
                    &packet.data,
                    packet.orig_len,
                );
                output.event(&event)?;
                input.advance(used);
            }
            Err(e) => input.recover(e)?,
        }
    }
    Ok(())
}

/// Interface of a pcapng section, as events need it.
struct Interface {
    name: String,
    link: u32,
    /// `if_tsoffset`: seconds to add to every timestamp of the interface.
    offset_ns: u128,
    /// Nanoseconds per timestamp unit (`if_tsresol`; default microseconds).
    tick_ns: f64,
}

fn interface_of(idb: &InterfaceDescriptionBlock) -> Interface {
    let mut name = String::new();
    let mut tick_ns = 1000.0;
    let mut offset_ns = 0;
    for option in &idb.options {
        match option {
            InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
            InterfaceDescriptionOption::IfTsResol(res) => {
                // High bit clear: 10^-res s; set: 2^-(res & 0x7f) s.
                tick_ns = if res & 0x80 == 0 {
                    1e9 / 10f64.powi(i32::from(*res))
                } else {
                    1e9 / 2f64.powi(i32::from(res & 0x7f))
                };
            }
            InterfaceDescriptionOption::IfTsOffset(secs) => {
                offset_ns = u128::from(*secs) * 1_000_000_000
            }
            _ => {}
        }
    }
    Interface {
        name,
        offset_ns,
        link: u32::from(idb.linktype),
        tick_ns,
    }
}

fn ticks_to_ns(ticks: u128, tick_ns: f64) -> u128 {
    if tick_ns >= 1.0 && tick_ns.fract() == 0.0 {
        ticks * tick_ns as u128
    } else {
        (ticks as f64 * tick_ns) as u128
    }
}

/// Which section the output is in while importing a pcapng: the import's own, or the one of a
/// trail header carried by the file (numbered in order of appearance).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Current {
    Nothing,
    Import,
    Carried(u64),
}

fn import_pcapng(input: &mut Chunks, header: Header, output: &mut Output) -> anyhow::Result<()> {
    let mut parser = input
        .parse(PcapNgParser::new)?
        .ok_or_else(|| input.bad(0, "truncated pcapng section header".into()))?;
    let name = input.name.clone();
    // Written before the first packet that needs it; the first IDB gives it a snap length.
    let mut import_header = header;
    let mut snaplen_known = false;
    let mut current = Current::Nothing;
    // The latest trail header carried by the file, as a frame with this stage appended.
    let mut carried: Option<(u64, Frame)> = None;
    let shb = pcapng::header_from_custom_options(&parser.section().options)
        .map_err(|why| bad_pcap(&name, 0, why))?;
    if let Some(record) = shb {
        carry(&mut carried, record, &name, 0)?;
    }
    let mut interfaces: Vec<Interface> = Vec::new();
    while input.has_more()? {
        let offset = input.offset;
        let block = match parser.next_block(input.unparsed()) {
            Ok((rest, block)) => {
                let used = input.pending() - rest.len();
                (used, block)
            }
            Err(e) => {
                input.recover(e)?;
                continue;
            }
        };
        let (used, block) = block;
        match block {
            Block::SectionHeader(shb) => {
                interfaces.clear();
                if let Some(record) = pcapng::header_from_custom_options(&shb.options)
                    .map_err(|why| bad_pcap(&name, offset, why))?
                {
                    carry(&mut carried, record, &name, offset)?;
                }
            }
            Block::InterfaceDescription(idb) => {
                if !snaplen_known {
                    import_header.snaplen = idb.snaplen;
                    snaplen_known = true;
                }
                interfaces.push(interface_of(&idb));
            }
            Block::EnhancedPacket(epb) => {
                let trail = pcapng::event_from_custom_options(&epb.options)
                    .map_err(|why| bad_pcap(&name, offset, why))?;
                if let Some(trail) = trail {
                    if let Some(header) = trail.header {
                        carry(&mut carried, header, &name, offset)?;
                    }
                    // Without any header (e.g. the file was edited) the packet is imported.
                    if let Some((number, header)) = &carried {
                        if current != Current::Carried(*number) {
                            output.forward(header, &name)?;
                            current = Current::Carried(*number);
                        }
                        let event = Frame {
                            kind: FrameKind::Event,
                            offset,
                            version: trail.event.version,
                            payload: trail.event.payload,
                        };
                        output.forward(&event, &name)?;
                        input.advance(used);
                        continue;
                    }
                }
                let interface = interfaces.get(epb.interface_id as usize).ok_or_else(|| {
                    let why = format!(
                        "packet refers to interface {} before its description",
                        epb.interface_id
                    );
                    bad_pcap(&name, offset, why)
                })?;
                let ts =
                    ticks_to_ns(epb.timestamp.as_nanos(), interface.tick_ns) + interface.offset_ns;
                let event = packet_event(
                    ts,
                    &interface.name,
                    Some(&interface.name),
                    interface.link,
                    &epb.data,
                    epb.original_len,
                );
                if current != Current::Import {
                    output.header(&import_header)?;
                    current = Current::Import;
                }
                output.event(&event)?;
            }
            Block::SimplePacket(spb) => {
                let interface = interfaces.first().ok_or_else(|| {
                    bad_pcap(
                        &name,
                        offset,
                        "simple packet before any interface description".into(),
                    )
                })?;
                let event = packet_event(
                    0,
                    &interface.name,
                    Some(&interface.name),
                    interface.link,
                    &spb.data,
                    spb.original_len,
                );
                if current != Current::Import {
                    output.header(&import_header)?;
                    current = Current::Import;
                }
                output.event(&event)?;
            }
            _ => {}
        }
        input.advance(used);
    }
    if current == Current::Nothing {
        // No packets: still produce a valid stream, with the carried header if there is one.
        match &carried {
            Some((_, header)) => output.forward(header, &name)?,
            None => output.header(&import_header)?,
        }
    }
    Ok(())
}

/// Makes a carried trail header the current one: a header frame with this stage appended,
/// numbered in order of appearance.
fn carry(
    carried: &mut Option<(u64, Frame)>,
    record: pcapng::CarriedRecord,
    input: &str,
    offset: u64,
) -> anyhow::Result<()> {
    let payload = cli::append_stage(&record.payload, &cli::this_stage(TOOL))
        .map_err(|e| bad_pcap(input, offset, format!("carried trail header: {e:#}")))?;
    let number = carried.as_ref().map_or(0, |(n, _)| n + 1);
    let frame = Frame {
        kind: FrameKind::Header,
        offset,
        version: record.version,
        payload,
    };
    *carried = Some((number, frame));
    Ok(())
}

fn packet_event(
    ts_ns: u128,
    probe: &str,
    dev: Option<&str>,
    link: u32,
    data: &[u8],
    orig_len: u32,
) -> Event {
    let layer = match link {
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => Layer::L3,
        _ => Layer::L2,
    };
    Event {
        common: Some(Common {
            timestamp: u64::try_from(ts_ns).unwrap_or(u64::MAX),
            ..Common::default()
        }),
        probe: Some(Probe {
            kind: ProbeKind::PcapImport,
            name: if probe.is_empty() {
                "pcap".into()
            } else {
                probe.into()
            },
        }),
        packet: Some(Packet {
            data: Bytes(data.to_vec()),
            len: orig_len.max(data.len() as u32),
            layer,
            linktype: link,
        }),
        dev: dev.filter(|name| !name.is_empty()).map(|name| Dev {
            name: name.into(),
            ..Dev::default()
        }),
        ..Event::default()
    }
}

/// A read buffer over an input that hands pcap-file's parsers whole records and tracks the byte
/// offset of each. Memory is bounded by the largest record (at most [`MAX_BLOCK`]).
struct Chunks {
    reader: BufReader<Box<dyn Read>>,
    name: String,
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[start..]`.
    start: usize,
    /// Byte offset of `buf[start]` within the input.
    offset: u64,
    eof: bool,
}

impl Chunks {
    fn new(reader: Box<dyn Read>, name: String) -> Chunks {
        Chunks {
            reader: BufReader::with_capacity(256 * 1024, reader),
            name,
            buf: Vec::with_capacity(512 * 1024),
            start: 0,
            offset: 0,
            eof: false,
        }
    }

    fn bad(&self, offset: u64, why: String) -> StreamError {
        bad_pcap(&self.name, offset, why)
    }

    /// Reads more input after the unparsed bytes; false at end of input.
    fn fill(&mut self) -> anyhow::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.buf.len() - self.start > MAX_BLOCK {
            return Err(self
                .bad(
                    self.offset,
                    format!("record larger than {MAX_BLOCK} bytes (corrupt length?)"),
                )
                .into());
        }
        // Compact only when refilling, so each byte moves at most once per refill.
        self.buf.drain(..self.start);
        self.start = 0;
        let available = self
            .reader
            .fill_buf()
            .with_context(|| format!("cannot read {}", self.name))?;
        if available.is_empty() {
            self.eof = true;
            return Ok(false);
        }
        let n = available.len();
        self.buf.extend_from_slice(available);
        self.reader.consume(n);
        Ok(true)
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn peek4(&mut self) -> anyhow::Result<[u8; 4]> {
        while self.pending() < 4 && self.fill()? {}
        match self.buf.get(self.start..self.start + 4) {
            Some(magic) => Ok([magic[0], magic[1], magic[2], magic[3]]),
            None if self.pending() == 0 => Err(self
                .bad(0, "empty input, expected a pcap or pcapng file".into())
                .into()),
            None => Err(self.bad(0, "truncated file header".into()).into()),
        }
    }

    /// Runs a parser constructor (which reads the file header); `None` if the input ends first.
    fn parse<T>(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Result<(&[u8], T), PcapError>,
    ) -> anyhow::Result<Option<T>> {
        loop {
            match parse(&self.buf[self.start..]) {
                Ok((rest, value)) => {
                    let used = self.pending() - rest.len();
                    self.advance(used);
                    return Ok(Some(value));
                }
                Err(PcapError::IncompleteBuffer) => {
                    if !self.fill()? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(self.bad(self.offset, e.to_string()).into()),
            }
        }
    }

    /// Ensures unparsed bytes are available; false at a clean end of input.
    fn has_more(&mut self) -> anyhow::Result<bool> {
        Ok(self.pending() > 0 || self.fill()?)
    }

    fn unparsed(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Handles a parse failure: reads more input after `IncompleteBuffer`, or reports the error
    /// (a truncated record when the input has ended).
    fn recover(&mut self, error: PcapError) -> anyhow::Result<()> {
        match error {
            PcapError::IncompleteBuffer => {
                if self.fill()? {
                    Ok(())
                } else {
                    let why = format!(
                        "truncated record: input ends {} bytes into it",
                        self.pending()
                    );
                    Err(self.bad(self.offset, why).into())
                }
            }
            other => Err(self.bad(self.offset, other.to_string()).into()),
        }
    }

    fn advance(&mut self, used: usize) {
        self.start += used;
        self.offset += used as u64;
    }
}

fn bad_pcap(input: &str, offset: u64, why: String) -> StreamError {
    StreamError {
        input: input.to_string(),
        offset,
        kind: ErrorKind::BadPcap(why),
    }
}
