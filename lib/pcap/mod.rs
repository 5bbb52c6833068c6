//! pcap and pcapng, both ways: [`export`] writes the packets of a stream for tcpdump, tshark and
//! Wireshark (`trail-to-pcap`); [`import`] reads captures into a stream (`trail-from-pcap`).

pub mod export;
pub mod import;
pub mod pcapng;
