//! Decodes every record of a stream on stdin into typed events and prints the count: the codec's
//! decode cost alone, for bench/run.sh.
fn main() -> std::process::ExitCode {
    trail::cli::run_tool("decode", || {
        let mut events = 0u64;
        let mut bytes = 0u64;
        trail::cli::Inputs::new(&[]).for_each_frame(|frame, input| {
            if frame.kind == trail::model::codec::FrameKind::Event {
                let event: trail::model::event::Event = trail::model::codec::decode(frame, input)?;
                bytes += event.packet.map_or(0, |p| p.data.0.len() as u64);
                events += 1;
            }
            Ok(())
        })?;
        println!("{events} events, {bytes} packet bytes");
        Ok(())
    })
}
