//! Writes a deterministic synthetic trail stream to stdout (see `trail::model::synth`).
//!
//! Usage: synth EVENTS [SEED] [SNAPLEN] [--no-tracking] [--disorder P]
//! `--no-tracking` leaves out the `tracking` section (input for trail-track); `--disorder P`
//! publishes a fraction P of events after the event that follows them.
use std::io::Write;

fn main() -> std::process::ExitCode {
    trail::cli::run_tool("synth", || {
        let mut config = trail::model::synth::SynthConfig::default();
        let mut positional = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--no-tracking" => config.tracking = false,
                "--disorder" => {
                    let value = args.next().unwrap_or_default();
                    config.disorder = value
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--disorder: not a number: {value}"))?;
                }
                _ => positional.push(arg),
            }
        }
        let number = |index: usize, default: u64| -> anyhow::Result<u64> {
            positional.get(index).map_or(Ok(default), |a| {
                a.parse().map_err(|_| anyhow::anyhow!("not a number: {a}"))
            })
        };
        let events = number(0, 1_000_000)?;
        config.seed = number(1, 1)?;
        config.snaplen = number(2, 256)? as usize;
        let synth = trail::model::synth::Synth::new(config);
        let mut out = trail::model::codec::Writer::new(std::io::stdout().lock());
        out.write_header(&synth.header())?;
        for event in synth.take(events as usize) {
            out.write_event(&event)?;
        }
        out.into_inner()?.flush()?;
        Ok(())
    })
}
