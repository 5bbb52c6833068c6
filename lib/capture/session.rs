//! Phases 4 and 5 of a capture: the session (header, `--cmd`, ring-buffer polling, writing,
//! loss counters) and finish (trailer, summary).
//!
//! Contract:
//! - The header is written and flushed before `--cmd` starts, so a reader sees the stream
//!   begin as soon as the probes are attached.
//! - Each ring-buffer poll batch is written and flushed before the next poll, so pipelines see
//!   events promptly. Losses counted by the programs reach the stream as `lost` records while
//!   capturing (polled every [`STATS_INTERVAL`]), and the trailer holds per-probe totals.
//! - The session stops on SIGINT/SIGTERM, `--count`, `--duration`, the end of `--cmd`, or the
//!   reader of stdout going away (quietly, like a broken pipe). It then detaches (drops the
//!   links) before draining what the programs wrote, so the final counters are complete.
//! - [`finish`] runs after the objects are unloaded: the trailer's duration includes that.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use libbpf_rs::skel::Skel;
use libbpf_rs::{Link, MapCore, MapFlags, RingBufferBuilder};

use super::bpf::{self, types};
use super::kernel;
use super::load::Loaded;
use super::plan::Plan;
use super::probe::Probe;
use super::record::Decoder;
use crate::cli::{self, Output};
use crate::model::event::{Clock, Header, Lost, ProbeTotals, Trailer, FORMAT_MAJOR, FORMAT_MINOR};

/// How often the per-probe loss counters are read while capturing.
pub const STATS_INTERVAL: Duration = Duration::from_millis(200);
/// Longest wait for ring-buffer data: the programs wake the reader only once a batch is
/// waiting, so this bounds the latency of a quiet capture.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM stop the session; without SA_RESTART so a blocked poll returns at once.
/// Installed early: a SIGINT while loading (seconds on a slow machine) is a clean stop too.
pub fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// What the session runs with besides the loaded objects.
pub struct Settings<'a> {
    pub snaplen: u32,
    pub count: Option<u64>,
    pub duration: Option<f64>,
    pub cmd: Option<&'a str>,
    /// Whether the binary stream goes to stdout (then `--cmd`'s stdout goes to stderr).
    pub stream_on_stdout: bool,
    /// When loading started, and how long loading and attaching took: `--duration` counts
    /// from the end of attaching.
    pub started: Instant,
    pub attached: Duration,
}

/// What the ring-buffer callback and the main loop share.
pub struct Sink {
    output: Output,
    decoder: Decoder,
    /// Events written, per probe id.
    events: Vec<u64>,
    written: u64,
    limit: Option<u64>,
    error: Option<anyhow::Error>,
}

impl Sink {
    /// Handles one record; a negative return stops the current ring-buffer consumption.
    fn record(&mut self, data: &[u8]) -> i32 {
        if self.limit.is_some_and(|limit| self.written >= limit) || self.error.is_some() {
            return -libc::ECANCELED;
        }
        let result = self
            .decoder
            .event(data)
            .and_then(|event| self.output.event(&event));
        match result {
            Ok(()) => {
                if let Some(id) = Decoder::probe_id(data) {
                    if let Some(count) = self.events.get_mut(id as usize) {
                        *count += 1;
                    }
                }
                self.written += 1;
                0
            }
            Err(err) => {
                self.error = Some(err);
                -libc::ECANCELED
            }
        }
    }

    fn done(&self) -> bool {
        self.error.is_some() || self.limit.is_some_and(|limit| self.written >= limit)
    }
}

/// How the session ended, for [`finish`].
pub struct Outcome {
    sink: Sink,
    /// Per-probe (hits, lost), read after detaching.
    stats: Vec<(u64, u64)>,
    /// Hits the kernel did not run a program for (see [`recursion_misses`]).
    missed: u64,
    start_mono: u64,
    child: Option<Child>,
    child_status: Option<ExitStatus>,
}

/// The stream header for this capture.
fn header(plan: &Plan, snaplen: u32) -> Header {
    let (host, release) = kernel::uname();
    let (offset, started_ns) = kernel::realtime_offset_ns();
    Header {
        version: (FORMAT_MAJOR, FORMAT_MINOR),
        tool: "trail-capture".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host,
        kernel: release,
        clock: Clock {
            source: "monotonic".into(),
            realtime_offset_ns: offset,
        },
        command: std::env::args().collect(),
        probes: plan.public().map(Probe::spec).collect(),
        snaplen,
        started_ns,
        pipeline: vec![cli::this_stage("trail-capture")],
    }
}

/// Writes the header, runs `--cmd`, and polls the ring buffer until a stop condition; then
/// detaches (`links`) and drains.
pub fn run(
    loaded: &Loaded<'_>,
    links: Vec<Link>,
    plan: &Plan,
    output: Output,
    decoder: Decoder,
    settings: &Settings<'_>,
) -> anyhow::Result<Outcome> {
    let skel = &loaded.primary;
    let probes = &plan.probes;
    let sink = RefCell::new(Sink {
        output,
        decoder,
        events: vec![0; probes.len()],
        written: 0,
        limit: settings.count,
        error: None,
    });
    {
        let mut sink = sink.borrow_mut();
        sink.output.header(&header(plan, settings.snaplen))?;
        sink.output.flush()?;
    }

    let mut child = match settings.cmd {
        Some(cmd) => Some(spawn(cmd, settings.stream_on_stdout)?),
        None => None,
    };
    let start_mono = kernel::monotonic_ns();
    let deadline = settings
        .duration
        .map(|secs| settings.started + Duration::from_secs_f64(secs) + settings.attached);
    let mut ring = RingBufferBuilder::new();
    ring.add(&skel.maps.events, |data: &[u8]| {
        sink.borrow_mut().record(data)
    })?;
    let ring = ring.build()?;

    let mut reported_lost = vec![0u64; probes.len()];
    let mut last_stats = (Instant::now(), start_mono);
    let mut report_lost =
        |sink: &RefCell<Sink>, last: &mut (Instant, u64)| -> anyhow::Result<Vec<(u64, u64)>> {
            let stats = read_stats(skel, probes)?;
            let now = kernel::monotonic_ns();
            let mut sink = sink.borrow_mut();
            for (probe, ((_, lost), reported)) in probes
                .iter()
                .zip(stats.iter().zip(reported_lost.iter_mut()))
                .filter(|(probe, _)| !probe.is_internal())
            {
                if *lost > *reported {
                    sink.output.lost(&Lost {
                        probe: probe.spec(),
                        count: *lost - *reported,
                        first_ns: last.1,
                        last_ns: now,
                        reason: "ringbuf-full".into(),
                    })?;
                    *reported = *lost;
                }
            }
            *last = (Instant::now(), now);
            Ok(stats)
        };

    let mut child_status = None;
    loop {
        // The programs wake the reader only once a batch is waiting, and a poll that times out
        // consumes nothing: drain whatever is there after every poll, so a quiet capture's
        // events leave within POLL_TIMEOUT.
        let polled = ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume());
        if let Some(err) = sink.borrow_mut().error.take() {
            return Err(err);
        }
        if let Err(err) = polled {
            if !sink.borrow().done() && err.kind() != libbpf_rs::ErrorKind::Interrupted {
                return Err(err).context("cannot read the ring buffer");
            }
        }
        if last_stats.0.elapsed() >= STATS_INTERVAL {
            report_lost(&sink, &mut last_stats)?;
        }
        sink.borrow_mut().output.flush()?;
        if cli::stdout_reader_gone() {
            // Same as a write failing with EPIPE: stop quietly, probes detached below.
            break;
        }
        if STOP.load(Ordering::Relaxed)
            || sink.borrow().done()
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait()? {
                child_status = Some(status);
                break;
            }
        }
    }

    // Detach first, then drain what the programs wrote before detaching.
    drop(links);
    if !sink.borrow().done() {
        let _ = ring.consume();
    }
    if let Some(err) = sink.borrow_mut().error.take() {
        return Err(err);
    }
    let stats = report_lost(&sink, &mut last_stats)?;
    let mut missed = recursion_misses(skel, &plan.programs);
    for (id, programs) in &loaded.instance_programs {
        if let Some(instance) = loaded.instances.get(id) {
            missed += recursion_misses(instance, programs);
        }
    }
    if missed > 0 {
        sink.borrow_mut().output.lost(&Lost {
            probe: String::new(),
            count: missed,
            first_ns: start_mono,
            last_ns: kernel::monotonic_ns(),
            reason: "recursion".into(),
        })?;
    }
    drop(ring);
    Ok(Outcome {
        sink: sink.into_inner(),
        stats,
        missed,
        start_mono,
        child,
        child_status,
    })
}

/// Writes the trailer and the summary on stderr, and ends `--cmd` if it still runs.
pub fn finish(outcome: Outcome, plan: &Plan) -> anyhow::Result<()> {
    let Outcome {
        mut sink,
        stats,
        missed,
        start_mono,
        mut child,
        child_status,
    } = outcome;
    let duration_ns = kernel::monotonic_ns().saturating_sub(start_mono);
    let mut trailer = Trailer {
        events: sink.written,
        lost: stats.iter().map(|s| s.1).sum(),
        duration_ns,
        probes: BTreeMap::new(),
    };
    for (probe, ((hits, lost), events)) in plan
        .probes
        .iter()
        .zip(stats.iter().zip(&sink.events))
        .filter(|(probe, _)| !probe.is_internal())
    {
        trailer.probes.insert(
            probe.spec(),
            ProbeTotals {
                hits: *hits,
                events: *events,
                lost: *lost,
            },
        );
    }
    sink.output.trailer(&trailer)?;
    sink.output.finish()?;

    let mut summary = format!(
        "trail-capture: {} events written, {} lost, {:.3} s",
        trailer.events,
        trailer.lost,
        duration_ns as f64 / 1e9
    );
    if missed > 0 {
        summary.push_str(&format!(
            "; {missed} hits not run by the kernel (program already running on the CPU)"
        ));
    }
    for (name, totals) in trailer.probes.iter().filter(|(_, t)| t.lost > 0) {
        summary.push_str(&format!(
            "; {name}: {} lost of {} hits",
            totals.lost, totals.hits
        ));
    }
    eprintln!("{summary}");
    if let Some(c) = child.as_mut() {
        if child_status.is_none() {
            // Stopped by a signal or a limit before the command ended: do not leave it behind.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    Ok(())
}

/// Per-probe (hits, lost) summed over CPUs.
fn read_stats(skel: &bpf::CaptureSkel<'_>, probes: &[Probe]) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut out = Vec::with_capacity(probes.len());
    for probe in probes {
        let per_cpu = skel
            .maps
            .probe_stats
            .lookup_percpu(&probe.id.to_ne_bytes(), MapFlags::ANY)
            .context("cannot read the probe counters")?
            .unwrap_or_default();
        let mut total = (0, 0);
        for value in per_cpu {
            let mut stats = types::trail_probe_stats::default();
            if plain::copy_from_bytes(&mut stats, &value).is_ok() {
                total.0 += stats.hits;
                total.1 += stats.lost;
            }
        }
        out.push(total);
    }
    Ok(out)
}

/// Hits the kernel did not run a program for because it was already running on that CPU
/// (`recursion_misses` of the loaded programs): not counted by the programs themselves.
fn recursion_misses(skel: &bpf::CaptureSkel<'_>, loaded: &[String]) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    let mut total = 0;
    for program in skel.object().progs() {
        if !loaded
            .iter()
            .any(|name| program.name().to_str() == Some(name.as_str()))
        {
            continue;
        }
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: the fd is a loaded program's; `info` and `len` describe a writable buffer.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                program.as_fd().as_raw_fd(),
                &mut info,
                &mut len,
            )
        };
        if rc == 0 {
            total += info.recursion_misses;
        }
    }
    total
}

/// Starts `--cmd` under `sh -c`. When the stream goes to stdout, the command's stdout goes to
/// stderr so it cannot corrupt the stream.
fn spawn(cmd: &str, stdout_is_stream: bool) -> anyhow::Result<Child> {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(cmd);
    if stdout_is_stream {
        use std::os::fd::AsFd;
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        command.stdout(Stdio::from(stderr));
    }
    command
        .spawn()
        .with_context(|| format!("cannot run --cmd '{cmd}'"))
}
