//! libpcap compilation, in one place: `trail-filter`'s `pcap("...")` predicates (run in user
//! space by `pcap_offline_filter`) and `trail-capture -f` (translated to eBPF by
//! `capture::kfilter`) compile pcap-filter(7) expressions here, so both accept exactly the same
//! expressions and report libpcap's own messages.
//!
//! Programs are optimized, as tcpdump compiles them, with an unknown netmask (0), as with
//! `tcpdump -r`. libpcap compiles for a DLT value, not for the LINKTYPE_ value a capture file
//! carries; the two differ for raw IP (LINKTYPE_RAW 101 is refused by `pcap_compile`, DLT_RAW 12
//! works on Linux), which [`dlt`] maps.

use pcap::{BpfProgram, Capture, Linktype};

use crate::model::event::linktype;

/// Ethernet.
pub const DLT_EN10MB: i32 = 1;
/// Raw IPv4/IPv6. LINKTYPE_RAW (101) is rejected by `pcap_compile`; DLT_RAW works.
pub const DLT_RAW: i32 = 12;

/// The DLT to compile for, given a stream's link type (a LINKTYPE_ value).
pub fn dlt(link: u32) -> i32 {
    match link {
        linktype::RAW => DLT_RAW,
        other => other as i32,
    }
}

/// Compiles `expr` for link type `dlt` (a DLT value); the error is libpcap's own message.
pub fn compile(expr: &str, dlt: i32) -> Result<BpfProgram, String> {
    let capture = Capture::dead(Linktype(dlt)).map_err(|e| e.to_string())?;
    capture.compile(expr, true).map_err(|e| match e {
        pcap::Error::PcapError(message) => message,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ip_compiles_as_dlt_raw() {
        assert_eq!(dlt(linktype::RAW), DLT_RAW);
        assert_eq!(dlt(linktype::ETHERNET), DLT_EN10MB);
        assert!(compile("tcp", dlt(linktype::RAW)).is_ok());
        // LINKTYPE_RAW, the pcap file value, is not a DLT libpcap compiles for.
        assert!(compile("tcp", 101).is_err());
        let Err(message) = compile("ether host 1:2:3:4:5:6", DLT_RAW) else {
            panic!("ether host compiled for raw IP");
        };
        assert!(message.contains("ethernet"), "{message}");
    }
}
