//! Writes one text line per event of a stream on stdin: the sort key trail-sort uses (journey id,
//! then timestamp) in fixed-width hex/decimal, then the event's MessagePack payload in base64.
//! The input of GNU sort in `bench/run.sh`: the same events and about the same bytes as the
//! stream, sortable with a plain byte comparison (`LC_ALL=C sort`).
use std::io::Write;

use trail::model::codec::{decode_section, Frame, FrameKind, RawMap};
use trail::model::event::{Common, Tracking};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

fn section<T: serde::de::DeserializeOwned>(
    frame: &Frame,
    input: &str,
    map: &RawMap,
    key: &str,
) -> anyhow::Result<Option<T>> {
    decode_section(&frame.payload, map, key)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{input}: byte {}: {key}: {e}", frame.offset))
}

fn main() -> std::process::ExitCode {
    trail::cli::run_tool("lines", || {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut line = Vec::with_capacity(4096);
        trail::cli::Inputs::new(&[]).for_each_frame(|frame, input| {
            if frame.kind != FrameKind::Event {
                return Ok(());
            }
            let map = RawMap::parse(&frame.payload).map_err(anyhow::Error::msg)?;
            let tracking: Tracking = section(frame, input, &map, "tracking")?.unwrap_or_default();
            let common: Option<Common> = section(frame, input, &map, "common")?;
            line.clear();
            write!(
                line,
                "{:016x}-{:016x} {:020} ",
                tracking.first_seen,
                tracking.orig_head,
                common.map_or(0, |c| c.timestamp)
            )?;
            base64(&frame.payload, &mut line);
            line.push(b'\n');
            out.write_all(&line)?;
            Ok(())
        })?;
        out.flush()?;
        Ok(())
    })
}
