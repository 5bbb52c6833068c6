//! Writes a deterministic synthetic trail stream to stdout (see `trail::synth`).
//! Usage: synth EVENTS [SEED] [SNAPLEN] [untracked]  (untracked: events without tracking ids)
use std::io::Write;

fn main() -> std::process::ExitCode {
    trail::cli::run_tool("synth", || {
        let mut args = std::env::args().skip(1);
        let parse = |arg: Option<String>, default: u64| -> anyhow::Result<u64> {
            arg.map_or(Ok(default), |a| {
                a.parse().map_err(|_| anyhow::anyhow!("not a number: {a}"))
            })
        };
        let events = parse(args.next(), 1_000_000)?;
        let seed = parse(args.next(), 1)?;
        let snaplen = parse(args.next(), 256)?;
        let tracked = args.next().as_deref() != Some("untracked");
        let config = trail::synth::SynthConfig {
            seed,
            snaplen: snaplen as usize,
            tracked,
            ..Default::default()
        };
        let synth = trail::synth::Synth::new(config);
        let mut out = trail::codec::Writer::new(std::io::stdout().lock());
        out.write_header(&synth.header())?;
        for event in synth.take(events as usize) {
            out.write_event(&event)?;
        }
        out.into_inner()?.flush()?;
        Ok(())
    })
}
