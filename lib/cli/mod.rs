//! What every trail tool shares: the exit helper, reading inputs, writing output, and parsing
//! sizes and durations ([`parse`]).
//!
//! Contracts every tool gets from here:
//! - Exit status 0 on success and on a broken pipe (quietly), 2 for bad input or usage (a
//!   [`StreamError`] about content, or a [`UsageError`]), 1 for anything else. One line on stderr:
//!   `trail-<tool>: error: <context>: <cause>`.
//! - Inputs are the file arguments in order, or stdin when there are none (or for `-`); sections
//!   may be concatenated within and across inputs.
//! - Output goes to stdout or `-o FILE`. A file is written under a temporary name in the same
//!   directory and renamed only by [`Output::finish`], so a failed run leaves no partial file.
//!   When stdout is a terminal, tools that produce a stream print text instead of binary.

pub mod parse;

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::model::codec::{self, Frame, FrameKind, RawMap, Reader};
use crate::model::error::{StreamError, UsageError};
use crate::model::event::{Event, Header, Lost, Stage, Trailer};

/// Runs a tool's body and maps its result to an exit status (see the module header).
pub fn run_tool(tool: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let bad_input = err.chain().any(|cause| {
                cause.downcast_ref::<UsageError>().is_some()
                    || cause
                        .downcast_ref::<StreamError>()
                        .is_some_and(StreamError::is_bad_input)
            });
            // Ignore a failure to write the message itself: there is nowhere left to report it.
            let _ = writeln!(io::stderr().lock(), "{tool}: error: {err:#}");
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

/// Whether any cause in the chain is an `EPIPE` write error.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// This invocation as a pipeline stage, for the header's provenance list.
pub fn this_stage(tool: &str) -> Stage {
    Stage {
        tool: tool.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        args: std::env::args().skip(1).collect(),
    }
}

/// Returns the header payload with `stage` appended to its `pipeline`; every other header field,
/// known or not, is kept byte for byte.
pub fn append_stage(payload: &[u8], stage: &Stage) -> anyhow::Result<Vec<u8>> {
    let index = RawMap::parse(payload).map_err(anyhow::Error::msg)?;
    let mut pipeline: Vec<Stage> = match index.get(payload, "pipeline") {
        Some(bytes) => rmp_serde::from_slice(bytes).context("header has an unreadable pipeline")?,
        None => Vec::new(),
    };
    pipeline.push(stage.clone());
    let mut value = Vec::new();
    codec::encode(&pipeline, &mut value);
    let mut out = Vec::with_capacity(payload.len() + value.len());
    index.with_entry(payload, "pipeline", &value, &mut out);
    Ok(out)
}

/// The inputs of a tool: file paths, or stdin. `-` means stdin.
pub struct Inputs {
    paths: Vec<PathBuf>,
}

impl Inputs {
    pub fn new(paths: &[PathBuf]) -> Inputs {
        Inputs {
            paths: if paths.is_empty() {
                vec![PathBuf::from("-")]
            } else {
                paths.to_vec()
            },
        }
    }

    /// Opens each input in turn as a frame reader.
    pub fn readers(&self) -> impl Iterator<Item = anyhow::Result<InputReader>> + '_ {
        self.paths.iter().map(|path| open_reader(path))
    }

    /// Calls `each` with every frame of every input, in order, and the name of its input.
    pub fn for_each_frame(
        &self,
        each: impl FnMut(&Frame, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.for_each_frame_live(each, || Ok(()))
    }

    /// Like [`Inputs::for_each_frame`], and calls `drained` whenever the next frame needs a read
    /// that may block: live stages flush their output there (`capture | filter | print`).
    pub fn for_each_frame_live(
        &self,
        mut each: impl FnMut(&Frame, &str) -> anyhow::Result<()>,
        mut drained: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut frame = Frame::default();
        for reader in self.readers() {
            let mut reader = reader?;
            loop {
                if reader.input_drained() {
                    drained()?;
                }
                if !reader.next_frame(&mut frame)? {
                    break;
                }
                each(&frame, reader.name())?;
            }
        }
        Ok(())
    }
}

/// A frame reader over one buffered input (see [`open_reader`]).
pub type InputReader = Reader<BufReader<Box<dyn io::Read>>>;

/// Opens one input path (`-` for stdin) as a buffered frame reader.
pub fn open_reader(path: &Path) -> anyhow::Result<InputReader> {
    const BUFFER: usize = 256 * 1024;
    if path == Path::new("-") {
        let stdin: Box<dyn io::Read> = Box::new(io::stdin());
        return Ok(Reader::new(
            BufReader::with_capacity(BUFFER, stdin),
            "stdin",
        ));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file: Box<dyn io::Read> = Box::new(file);
    Ok(Reader::new(
        BufReader::with_capacity(BUFFER, file),
        path.display().to_string(),
    ))
}

/// A binary output: stdout, or a file that appears only when [`Output::finish`] succeeds.
pub struct BinaryOutput {
    writer: codec::Writer<RawOutput>,
}

impl BinaryOutput {
    /// Opens `path` (through a temporary file in the same directory), or stdout when `None`.
    pub fn create(path: Option<&Path>) -> anyhow::Result<BinaryOutput> {
        Ok(BinaryOutput {
            writer: codec::Writer::new(RawOutput::create(path)?),
        })
    }

    pub fn writer(&mut self) -> &mut codec::Writer<RawOutput> {
        &mut self.writer
    }

    /// Flushes, and for a file renames it into place. Dropping without calling this removes the
    /// temporary file.
    pub fn finish(self) -> anyhow::Result<()> {
        self.writer
            .into_inner()
            .context("cannot write output")?
            .finish()
    }
}

/// Where an output path's bytes go.
pub enum OutputPath {
    /// A device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named pipe), opened for writing
    /// in place: renaming a temporary file over it would replace the device itself (as root,
    /// `-o /dev/null` would leave a regular file at /dev/null).
    Special(std::fs::File),
    /// A regular file (existing or not), to be written under a temporary name and renamed to
    /// this path, which is the symlink's target when the given path is a symlink (so the link
    /// stays a link).
    Regular(PathBuf),
}

/// Decides how `path` is written (see [`OutputPath`]). A directory is an error.
pub fn output_path(path: &Path) -> anyhow::Result<OutputPath> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        // Nothing there yet (or a dangling link: written as a new file at the link's place).
        Err(_) => return Ok(OutputPath::Regular(path.to_path_buf())),
    };
    if meta.is_dir() {
        anyhow::bail!(
            "cannot write output to {}: it is a directory",
            path.display()
        );
    }
    if !meta.is_file() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {} for writing", path.display()))?;
        return Ok(OutputPath::Special(file));
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        let target = std::fs::canonicalize(path)
            .with_context(|| format!("cannot resolve the link {}", path.display()))?;
        return Ok(OutputPath::Regular(target));
    }
    Ok(OutputPath::Regular(path.to_path_buf()))
}

/// A plain byte output (for trail streams through [`BinaryOutput`], and for pcap, parquet, ...):
/// stdout, or a file that appears only when [`RawOutput::finish`] succeeds. The file is written
/// under a temporary name in the same directory and renamed, so a failed run leaves nothing.
/// Unbuffered: wrap it in the tool's one `BufWriter`.
pub struct RawOutput {
    inner: Box<dyn Write>,
    pending: Option<(tempfile::TempPath, PathBuf)>,
}

impl RawOutput {
    /// Opens `path` (through a temporary file in the same directory, or in place for a device
    /// or FIFO: see [`output_path`]), or stdout when `None`.
    pub fn create(path: Option<&Path>) -> anyhow::Result<RawOutput> {
        let Some(path) = path else {
            return Ok(RawOutput {
                inner: Box::new(io::stdout().lock()),
                pending: None,
            });
        };
        let path = match output_path(path)? {
            OutputPath::Special(file) => {
                return Ok(RawOutput {
                    inner: Box::new(file),
                    pending: None,
                })
            }
            OutputPath::Regular(path) => path,
        };
        let path = path.as_path();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // Like any file a tool creates: 0666 less the umask, not tempfile's private 0600.
        let temp = tempfile::Builder::new()
            .prefix(".trail-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let (file, temp_path) = temp.into_parts();
        Ok(RawOutput {
            inner: Box::new(file),
            pending: Some((temp_path, path.to_path_buf())),
        })
    }

    /// Flushes, and for a file renames it into place. Dropping without calling this removes the
    /// temporary file.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.inner.flush().context("cannot write output")?;
        drop(self.inner);
        if let Some((temp, path)) = self.pending {
            temp.persist(&path)
                .with_context(|| format!("cannot rename output into {}", path.display()))?;
        }
        Ok(())
    }
}

impl Write for RawOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What shows a stream as text on a terminal. The switch between binary and text lives here, in
/// [`Output`]; the rendering lives in `print` (its `Printer` implements this), so that this layer
/// knows nothing of how events look.
pub trait TextSink {
    /// Renders one frame as read from `input` (named in error messages).
    fn frame(&mut self, frame: &Frame, input: &str) -> anyhow::Result<()>;
    fn header(&mut self, header: &Header) -> io::Result<()>;
    fn event(&mut self, event: &Event) -> io::Result<()>;
    fn lost(&mut self, lost: &Lost) -> io::Result<()>;
    fn trailer(&mut self, trailer: &Trailer) -> io::Result<()>;
    /// Writes out what is buffered; more frames may follow.
    fn flush(&mut self) -> io::Result<()>;
    /// The input has ended: writes anything held back, then flushes.
    fn finish(&mut self) -> io::Result<()>;
}

/// Where a stream-producing tool writes: the binary stream, or text when stdout is a terminal.
pub enum Output {
    Binary(BinaryOutput),
    Text(Box<dyn TextSink>),
}

impl Output {
    /// `-o FILE` always gets the binary stream; stdout gets text when it is a terminal, rendered
    /// by what `text` makes of the locked stdout (`print::terminal`).
    pub fn create(
        path: Option<&Path>,
        text: impl FnOnce(Box<dyn Write>) -> Box<dyn TextSink>,
    ) -> anyhow::Result<Output> {
        if path.is_none() && io::stdout().is_terminal() {
            return Ok(Output::Text(text(Box::new(io::stdout().lock()))));
        }
        Ok(Output::Binary(BinaryOutput::create(path)?))
    }

    /// Whether this output shows text (a terminal): producers may then flush after each event.
    pub fn is_text(&self) -> bool {
        matches!(self, Output::Text(_))
    }

    /// Forwards one frame as read; header frames must already carry this stage in their pipeline.
    pub fn forward(&mut self, frame: &Frame, input: &str) -> anyhow::Result<()> {
        match self {
            Output::Binary(out) => Ok(out.writer.forward(frame)?),
            Output::Text(printer) => printer.frame(frame, input),
        }
    }

    pub fn header(&mut self, header: &Header) -> anyhow::Result<()> {
        match self {
            Output::Binary(out) => Ok(out.writer.write_header(header)?),
            Output::Text(printer) => Ok(printer.header(header)?),
        }
    }

    pub fn event(&mut self, event: &Event) -> anyhow::Result<()> {
        match self {
            Output::Binary(out) => Ok(out.writer.write_event(event)?),
            Output::Text(printer) => Ok(printer.event(event)?),
        }
    }

    pub fn lost(&mut self, lost: &Lost) -> anyhow::Result<()> {
        match self {
            Output::Binary(out) => Ok(out.writer.write_lost(lost)?),
            Output::Text(printer) => Ok(printer.lost(lost)?),
        }
    }

    pub fn trailer(&mut self, trailer: &Trailer) -> anyhow::Result<()> {
        match self {
            Output::Binary(out) => Ok(out.writer.write_trailer(trailer)?),
            Output::Text(printer) => Ok(printer.trailer(trailer)?),
        }
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Output::Binary(out) => Ok(out.writer.flush()?),
            Output::Text(printer) => Ok(printer.flush()?),
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::Binary(out) => out.finish(),
            Output::Text(mut printer) => Ok(printer.finish()?),
        }
    }
}

/// A pass-through stage's header handling: appends `stage` to a header frame's pipeline.
pub fn stage_header(frame: &Frame, stage: &Stage) -> anyhow::Result<Frame> {
    debug_assert_eq!(frame.kind, FrameKind::Header);
    Ok(Frame {
        payload: append_stage(&frame.payload, stage)?,
        ..frame.clone()
    })
}

/// Every trail tool with its one-line purpose: the list `trail --help` shows.
pub const TOOLS: &[(&str, &str)] = &[
    (
        "capture",
        "trace packets in the kernel with eBPF and write the event stream",
    ),
    (
        "filter",
        "keep the events (or whole journeys) that match an expression",
    ),
    (
        "track",
        "add or complete tracking ids and link journeys across NAT, tunnels and hosts",
    ),
    ("sort", "group events into packet journeys, in order"),
    ("print", "show a stream as text or JSON lines"),
    (
        "to-pcap",
        "write the packets as pcapng/pcap for tcpdump, tshark and Wireshark",
    ),
    (
        "to-parquet",
        "write the events as Parquet for DuckDB, pandas, Spark",
    ),
    ("from-pcap", "import pcap/pcapng captures as a stream"),
];

/// The `trail` front command: `trail TOOL ARGS...` runs `trail-TOOL ARGS...` (git-style), looked
/// up next to this executable first, then on `PATH`. Returns the tool's exit status.
pub fn run_front(args: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    let usage = || {
        let mut text = String::from(
            "usage: trail TOOL [ARGS...]   (same as trail-TOOL [ARGS...])\n\ntools:\n",
        );
        for (name, what) in TOOLS {
            text.push_str(&format!("  {name:<11} {what}\n"));
        }
        text.push_str("\n`trail TOOL --help` shows a tool's options.\n");
        text
    };
    let Some(tool) = args.first().and_then(|a| a.to_str()) else {
        eprint!("{}", usage());
        return Ok(ExitCode::from(2));
    };
    match tool {
        "-h" | "--help" | "help" => {
            print!("{}", usage());
            return Ok(ExitCode::SUCCESS);
        }
        "-V" | "--version" => {
            println!("trail {}", env!("CARGO_PKG_VERSION"));
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    if !TOOLS.iter().any(|(name, _)| *name == tool) {
        return Err(UsageError(format!("unknown tool '{tool}' (see trail --help)")).into());
    }
    let program = format!("trail-{tool}");
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&program)))
        .filter(|path| path.is_file());
    let command = beside.unwrap_or_else(|| PathBuf::from(&program));
    let status = std::process::Command::new(&command)
        .args(&args[1..])
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    // A tool killed by a signal has no code: report it like a shell would (128 + signal).
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Whether stdout is a pipe or socket whose reading end has gone (`trail-capture | head -c 100`
/// after head exits). A producer that may stay quiet for a long time checks this between
/// batches: otherwise it would only learn of the broken pipe at its next write.
pub fn stdout_reader_gone() -> bool {
    let mut fds = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1, zero timeout (never blocks).
    let ready = unsafe { libc::poll(&mut fds, 1, 0) };
    ready > 0 && fds.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
