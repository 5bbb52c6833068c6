//! `pcap("...")` predicates: compiled by libpcap, run by libpcap's own matcher
//! (`pcap_offline_filter`) on each event's captured bytes, so verdicts are exactly tcpdump's.
//!
//! A filter compiles per link type (an Ethernet program cannot read a raw IP packet), lazily
//! on the first event of each link type, and the program is cached. Compilation is
//! [`crate::expr::pcap`]'s, shared with `trail-capture -f`.

use std::os::raw::{c_int, c_uint};

use pcap::{BpfInstruction, BpfProgram};

use crate::expr::pcap as libpcap;
use crate::model::event::linktype;

/// One `pcap("...")` of an expression and its programs, per link type.
pub struct PcapFilter {
    pub text: String,
    /// Column of the filter string in the expression, for error messages.
    pub column: usize,
    programs: Vec<(u32, Result<BpfProgram, String>)>,
}

/// A name for a link type in messages.
pub fn link_name(link: u32) -> String {
    match link {
        linktype::ETHERNET => "Ethernet (link type 1)".into(),
        linktype::RAW => "raw IP (link type 101)".into(),
        linktype::LINUX_SLL => "Linux cooked v1 (link type 113)".into(),
        linktype::LINUX_SLL2 => "Linux cooked v2 (link type 276)".into(),
        other => format!("link type {other}"),
    }
}

fn compile(text: &str, link: u32) -> Result<BpfProgram, String> {
    libpcap::compile(text, libpcap::dlt(link))
}

/// `struct bpf_program` as `pcap_offline_filter` reads it.
#[repr(C)]
struct RawProgram {
    len: c_uint,
    instructions: *const BpfInstruction,
}

/// `struct pcap_pkthdr`: the matcher reads `caplen` (bytes present) and `len` (on the wire).
#[repr(C)]
struct RawHeader {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

extern "C" {
    // Provided by libpcap, which the `pcap` crate links.
    fn pcap_offline_filter(
        program: *const RawProgram,
        header: *const RawHeader,
        data: *const u8,
    ) -> c_int;
}

/// Runs a compiled program on one packet. The `pcap` crate's own `BpfProgram::filter` reports
/// the captured length as the wire length, which would make `len`, `greater` and `less`
/// disagree with tcpdump on truncated captures; this passes both.
fn run(program: &BpfProgram, data: &[u8], wire_len: u32) -> bool {
    let instructions = program.get_instructions();
    let raw = RawProgram {
        len: instructions.len() as c_uint,
        instructions: instructions.as_ptr(),
    };
    let header = RawHeader {
        ts: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: data.len() as u32,
        len: wire_len.max(data.len() as u32),
    };
    // SAFETY: `BpfInstruction` is `#[repr(transparent)]` over libpcap's `struct bpf_insn`, so
    // `raw` is a valid `struct bpf_program` whose instructions live as long as `program`, which
    // outlives this call. `header.caplen` is exactly the number of bytes readable at `data`, and
    // the matcher only reads (it bounds every packet load by `caplen`).
    unsafe { pcap_offline_filter(&raw, &header, data.as_ptr()) > 0 }
}

impl PcapFilter {
    /// Checks the filter by compiling it for Ethernet, so that syntax errors are reported
    /// before any input is read.
    pub fn new(text: &str, column: usize) -> Result<PcapFilter, String> {
        let program = compile(text, linktype::ETHERNET)?;
        Ok(PcapFilter {
            text: text.to_string(),
            column,
            programs: vec![(linktype::ETHERNET, Ok(program))],
        })
    }

    /// libpcap's verdict on one packet of link type `link`; an error when the filter does not
    /// compile for that link type (e.g. `ether host` on raw IP).
    pub fn matches(&mut self, link: u32, data: &[u8], wire_len: u32) -> Result<bool, String> {
        let index = match self.programs.iter().position(|(l, _)| *l == link) {
            Some(index) => index,
            None => {
                self.programs.push((link, compile(&self.text, link)));
                self.programs.len() - 1
            }
        };
        match &self.programs[index].1 {
            Ok(program) => Ok(run(program, data, wire_len)),
            Err(message) => Err(format!(
                "pcap(\"{}\") at expression column {} does not compile for {} packets: {message}",
                self.text,
                self.column,
                link_name(link)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + UDP packet from 192.0.2.1:1000 to 192.0.2.2:53, `payload` bytes.
    fn udp(payload: usize) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(1000, 53);
        let mut out = Vec::new();
        builder.write(&mut out, &vec![0u8; payload]).unwrap();
        out
    }

    #[test]
    fn matches_on_ethernet_and_raw_ip() {
        let packet = udp(10);
        let mut filter = PcapFilter::new("udp dst port 53 and src host 192.0.2.1", 1).unwrap();
        assert!(filter
            .matches(linktype::ETHERNET, &packet, packet.len() as u32)
            .unwrap());
        assert!(filter
            .matches(linktype::RAW, &packet[14..], packet.len() as u32 - 14)
            .unwrap());
        let mut other = PcapFilter::new("tcp", 1).unwrap();
        assert!(!other
            .matches(linktype::ETHERNET, &packet, packet.len() as u32)
            .unwrap());
        assert!(!other
            .matches(linktype::RAW, &packet[14..], packet.len() as u32)
            .unwrap());
    }

    #[test]
    fn wire_length_is_the_packets_not_the_capture() {
        let packet = udp(1000);
        let mut filter = PcapFilter::new("greater 500", 1).unwrap();
        assert!(filter
            .matches(linktype::ETHERNET, &packet[..100], packet.len() as u32)
            .unwrap());
        assert!(!filter
            .matches(linktype::ETHERNET, &packet[..100], 100)
            .unwrap());
    }

    #[test]
    fn errors_carry_libpcaps_message() {
        let message = PcapFilter::new("tcp prot 80", 1).err().unwrap();
        assert!(message.contains("syntax error"), "{message}");
        let mut filter = PcapFilter::new("ether host 01:02:03:04:05:06", 7).unwrap();
        let message = filter
            .matches(linktype::RAW, &udp(1)[14..], 29)
            .unwrap_err();
        assert!(
            message.contains("raw IP") && message.contains("column 7"),
            "{message}"
        );
    }
}
