//! `trail-to-parquet`: a trail stream as Parquet, for DuckDB, pandas/polars, Spark and Trino.
//!
//! Contract:
//! - One row per event, columns as in [`columns::COLUMNS`] (specified in `schemas/parquet.md`).
//!   Unknown sections go to the `extra` column as JSON; lost records are totalled in the file's
//!   key-value metadata with the section headers (each with this stage in its pipeline).
//! - Output is one file (`-o FILE`, or stdout when it is not a terminal) or a Hive-partitioned
//!   dataset directory (`--partition-by`). Files are written under hidden temporary names and
//!   renamed only when the whole run succeeded: bad or truncated input leaves nothing behind,
//!   and a dataset only ever gains complete files (existing ones are never touched).
//! - Rows within a row group are sorted by `time` (nulls last), declared as the row group's
//!   sorting column. A hold-back window (`--sort-window`) also orders events across row-group
//!   boundaries, so a file is globally sorted when the input's disorder is smaller than the
//!   window (per-CPU ring buffers give small disorder); `trail.sorted` in the metadata says
//!   `file` or `row-group`.
//! - Memory is bounded, whatever the input size: at most `row-group-size + sort-window` raw
//!   events wait per partition, at most `threads` row groups are being encoded (each decoded
//!   [`SLICE`] events at a time), and with partitions the events waiting across all partitions
//!   are capped (the largest is flushed early).
//!
//! Pipeline: the reading thread frames events, reads only their `common` (and `probe`) sections
//! to route and order them, and hands whole row groups to a rayon pool; a worker decodes the
//! events, dissects packets, builds the Arrow columns and encodes them with one
//! [`ArrowColumnWriter`](parquet::arrow::arrow_writer::ArrowColumnWriter) per leaf column, columns
//! in parallel. The reading thread appends finished row groups to their file in dispatch order,
//! so input keeps flowing while earlier row groups encode.

pub mod columns;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arrow::datatypes::{Schema, SchemaRef};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowRowGroupWriterFactory, ArrowWriter, ArrowWriterOptions,
};
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, SchemaDescPtr};
use rayon::prelude::*;

use crate::cli::{self, Inputs};
use crate::model::codec::{self, Frame, FrameKind, RawMap};
use crate::model::error::{ErrorKind, StreamError, UsageError};
use crate::model::event::{Common, Event, Header, Lost, ProbeKind, SECTIONS};
use columns::{Column, Row, COLUMNS};

/// Compression codecs offered on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// zstd level 1: about as fast as snappy here, files a third smaller.
    #[default]
    Zstd,
    Snappy,
    None,
}

/// Keys a dataset can be partitioned by (directories `key=value`, in the order given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionKey {
    /// The event's host (`common.host`, else the section header's).
    Host,
    /// UTC date of `time` (YYYY-MM-DD).
    Date,
    /// Probe name (`net:netif_receive_skb`).
    Probe,
}

impl PartitionKey {
    fn name(self) -> &'static str {
        match self {
            PartitionKey::Host => "host",
            PartitionKey::Date => "date",
            PartitionKey::Probe => "probe",
        }
    }
}

/// Write trail events as Parquet for DuckDB, pandas/polars, Spark and Trino: one row per event,
/// dissected packet fields as columns, sorted by time, zstd-compressed, with statistics and page
/// indexes. Memory stays bounded (row groups encoded in parallel while input keeps flowing).
#[derive(Debug, clap::Parser)]
#[command(name = "trail-to-parquet", version)]
pub struct Args {
    /// Trail streams to convert (default: stdin; `-` for stdin). Sections may be concatenated.
    pub inputs: Vec<PathBuf>,
    /// Output file; with --partition-by, the dataset directory (created if missing). Without
    /// it, the file goes to stdout, which must not be a terminal.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Write a Hive-partitioned dataset under -o DIR, one directory level per key
    /// (comma-separated: host, date, probe), e.g. `host=a/date=2026-11-26/probe=.../part-*.parquet`.
    /// New files are added next to existing ones; partition columns are not repeated inside
    /// the files.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KEYS")]
    pub partition_by: Vec<PartitionKey>,
    /// Events per row group. Memory grows with it: a row group's raw events are held while it
    /// is encoded.
    #[arg(long, default_value_t = 65_536, value_name = "N")]
    pub row_group_size: usize,
    /// Encoding threads, and the number of row groups encoded at once (default: CPUs). 1
    /// encodes on the reading thread, with no overlap.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Events held back past a full row group to order events across row-group boundaries
    /// (0: order within each row group only).
    #[arg(long, default_value_t = 16_384, value_name = "N")]
    pub sort_window: usize,
    /// Compression codec.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: Compression,
    /// Leave out the `packet` column (captured bytes); dissected fields stay.
    #[arg(long)]
    pub no_packet_bytes: bool,
    /// Partition files open at once; the least recently used one is completed when more are
    /// needed (its partition gets a new file if more events come).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_open_files: usize,
}

/// What a section header tells about its events.
struct SectionInfo {
    input: Arc<str>,
    host: Option<Arc<str>>,
    kernel: Option<Arc<str>>,
    realtime_offset_ns: i64,
}

/// One event waiting for its row group: the raw payload with what routing needed. Kept small
/// (the payload and a few words): up to `row-group-size + sort-window` of these wait per
/// partition.
struct Item {
    payload: Vec<u8>,
    offset: u64,
    section: Arc<SectionInfo>,
    time: Option<i64>,
    host: Option<Arc<str>>,
    /// Probe name, read only when partitioning by probe.
    probe: Option<Box<str>>,
}

impl Item {
    /// Sort key: by time, events without one last.
    fn key(&self) -> (bool, i64) {
        (self.time.is_none(), self.time.unwrap_or(0))
    }
}

/// Settings shared by every file of a run.
struct Plan {
    schema: SchemaRef,
    /// The Parquet schema the writer derives from `schema` (maps leaf columns to top-level ones).
    descriptor: SchemaDescPtr,
    columns: Arc<Vec<&'static Column>>,
    properties: WriterProperties,
    row_group_size: usize,
    sort_window: usize,
    threads: usize,
}

/// `trail-to-parquet`: converts every input into one file or a dataset.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.row_group_size == 0 {
        return Err(UsageError("--row-group-size must be at least 1".into()).into());
    }
    let partitioned = !args.partition_by.is_empty();
    let destination = match (&args.output, partitioned) {
        (Some(path), true) => Destination::Dataset(path.clone()),
        (None, true) => {
            return Err(
                UsageError("--partition-by needs -o DIR (the dataset directory)".into()).into(),
            )
        }
        (Some(path), false) if path != Path::new("-") => Destination::File(path.clone()),
        _ => {
            if io::stdout().is_terminal() {
                return Err(UsageError(
                    "refusing to write Parquet to a terminal: use -o FILE or redirect stdout"
                        .into(),
                )
                .into());
            }
            Destination::Stdout
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let plan = Plan::new(args, threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("parquet-{i}"))
        .build()
        .context("cannot start encoding threads")?;
    let mut converter = Converter {
        plan,
        pool,
        destination,
        partition_by: args.partition_by.clone(),
        max_open_files: args.max_open_files.max(1),
        partitions: Vec::new(),
        by_key: HashMap::new(),
        pending_total: 0,
        in_flight: VecDeque::new(),
        finished: Vec::new(),
        clock: 0,
        run_id: run_id(),
        file_seq: 0,
        metadata: RunMetadata::default(),
    };
    let mut progress = Progress::new();
    converter.read_all(&Inputs::new(&args.inputs), &mut progress)?;
    converter.finish()?;
    progress.done();
    Ok(())
}

impl Plan {
    fn new(args: &Args, threads: usize) -> Plan {
        let left_out: Vec<&str> = args
            .partition_by
            .iter()
            .map(|key| key.name())
            .chain(args.no_packet_bytes.then_some("packet"))
            .collect();
        let columns: Vec<&'static Column> = COLUMNS
            .iter()
            .filter(|c| !left_out.contains(&c.name))
            .collect();
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| c.field()).collect::<Vec<_>>(),
        ));
        let compression = match args.compression {
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::None => ParquetCompression::UNCOMPRESSED,
        };
        let mut properties = WriterProperties::builder()
            .set_compression(compression)
            .set_statistics_enabled(EnabledStatistics::Page)
            // Pages of at most 20k rows give the page index something to prune with.
            .set_data_page_row_count_limit(20_000)
            .set_max_row_group_row_count(None)
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            }]))
            .set_created_by(format!(
                "trail-to-parquet {} (parquet-rs)",
                env!("CARGO_PKG_VERSION")
            ));
        for column in &columns {
            if !column.dictionary {
                properties =
                    properties.set_column_dictionary_enabled(ColumnPath::from(column.name), false);
            }
        }
        // The writer derives the same descriptor from the same schema; a schema made of the
        // types above always converts.
        let descriptor = Arc::new(
            parquet::arrow::ArrowSchemaConverter::new()
                .convert(&schema)
                .expect("the trail schema converts to Parquet"),
        );
        Plan {
            descriptor,
            schema,
            columns: Arc::new(columns),
            properties: properties.build(),
            row_group_size: args.row_group_size,
            sort_window: args.sort_window,
            threads,
        }
    }
}

enum Destination {
    Stdout,
    File(PathBuf),
    Dataset(PathBuf),
}

/// Run-wide facts stored in every file's key-value metadata.
#[derive(Default)]
struct RunMetadata {
    /// Section headers as JSON (with this stage appended), at most [`MAX_HEADERS`].
    headers: Vec<serde_json::Value>,
    sections: u64,
    lost: std::collections::BTreeMap<String, u64>,
}

/// Headers kept in the metadata; a run over thousands of concatenated sections keeps a count.
const MAX_HEADERS: usize = 256;

/// An open Parquet file and what is known about its order.
struct Sink {
    writer: SerializedFileWriter<Box<dyn Write + Send>>,
    factory: Arc<ArrowRowGroupWriterFactory>,
    descriptor: SchemaDescPtr,
    /// Temporary file and final name (`None` for stdout).
    rename: Option<(tempfile::TempPath, PathBuf)>,
    row_groups: usize,
    /// Sort key of the last event handed to this file.
    last_key: Option<(bool, i64)>,
    sorted: bool,
}

struct Partition {
    /// Directory relative to the dataset root (`host=a/date=.../`); empty for a single file.
    dir: PathBuf,
    pending: Vec<Item>,
    sink: Option<Sink>,
    last_used: u64,
}

/// A row group handed to the pool, in dispatch order.
struct InFlight {
    partition: usize,
    result: mpsc::Receiver<anyhow::Result<Vec<ArrowColumnChunk>>>,
}

struct Converter {
    plan: Plan,
    pool: rayon::ThreadPool,
    destination: Destination,
    partition_by: Vec<PartitionKey>,
    max_open_files: usize,
    partitions: Vec<Partition>,
    by_key: HashMap<String, usize>,
    pending_total: usize,
    in_flight: VecDeque<InFlight>,
    /// Completed temporary files, renamed into place when the run succeeds.
    finished: Vec<(tempfile::TempPath, PathBuf)>,
    clock: u64,
    run_id: String,
    file_seq: u64,
    metadata: RunMetadata,
}

/// The parts of an event routing and ordering need; serde skips the other sections.
#[derive(serde::Deserialize)]
struct Routing {
    #[serde(default)]
    common: Option<Common>,
    #[serde(default)]
    probe: Option<ProbeName>,
}

#[derive(serde::Deserialize)]
struct ProbeName {
    #[serde(default)]
    name: String,
}

fn corrupt(input: &str, offset: u64, why: impl Into<String>) -> StreamError {
    StreamError {
        input: input.to_string(),
        offset,
        kind: ErrorKind::Corrupt(why.into()),
    }
}

impl Converter {
    fn read_all(&mut self, inputs: &Inputs, progress: &mut Progress) -> anyhow::Result<()> {
        let mut frame = Frame::default();
        let stage = cli::this_stage("trail-to-parquet");
        for reader in inputs.readers() {
            let mut reader = reader?;
            let input: Arc<str> = Arc::from(reader.name());
            let mut section: Option<Arc<SectionInfo>> = None;
            while reader.next_frame(&mut frame)? {
                progress.bytes += frame.payload.len() as u64 + 5;
                match frame.kind {
                    FrameKind::Header => {
                        let mut header: Header = codec::decode(&frame, &input)?;
                        let nonempty = |s: &str| (!s.is_empty()).then(|| Arc::from(s));
                        section = Some(Arc::new(SectionInfo {
                            input: input.clone(),
                            host: nonempty(&header.host),
                            kernel: nonempty(&header.kernel),
                            realtime_offset_ns: header.clock.realtime_offset_ns,
                        }));
                        self.metadata.sections += 1;
                        if self.metadata.headers.len() < MAX_HEADERS {
                            header.pipeline.push(stage.clone());
                            self.metadata
                                .headers
                                .push(serde_json::to_value(&header).unwrap_or_default());
                        }
                    }
                    FrameKind::Event => {
                        // The reader guarantees a header before any event.
                        let Some(section) = &section else { continue };
                        let item = self.item(&mut frame, section)?;
                        self.route(item)?;
                        progress.event();
                    }
                    FrameKind::Lost => {
                        let lost: Lost = codec::decode(&frame, &input)?;
                        *self.metadata.lost.entry(lost.probe).or_default() += lost.count;
                    }
                    FrameKind::Trailer | FrameKind::Other(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Takes the event's payload out of `frame` and reads what routing and ordering need.
    fn item(&self, frame: &mut Frame, section: &Arc<SectionInfo>) -> anyhow::Result<Item> {
        let payload = std::mem::take(&mut frame.payload);
        // One pass that decodes `common` (and `probe`) and skips every other value.
        let routing: Routing = rmp_serde::from_slice(&payload)
            .map_err(|e| corrupt(&section.input, frame.offset, e.to_string()))?;
        let common = routing.common;
        let time = common.as_ref().and_then(|c| {
            i64::try_from(i128::from(c.timestamp) + i128::from(section.realtime_offset_ns)).ok()
        });
        let host = match common.and_then(|c| c.host) {
            Some(host) if !host.is_empty() => Some(Arc::from(host.as_str())),
            Some(_) => None,
            None => section.host.clone(),
        };
        let probe = if self.partition_by.contains(&PartitionKey::Probe) {
            routing.probe.map(|p| p.name.into_boxed_str())
        } else {
            None
        };
        Ok(Item {
            payload,
            offset: frame.offset,
            section: section.clone(),
            time,
            host,
            probe,
        })
    }

    /// The partition directory of an event (`host=a/date=2026-11-26`).
    fn partition_dir(&self, item: &Item) -> anyhow::Result<String> {
        let mut dir = String::new();
        for key in &self.partition_by {
            let value: Option<String> = match key {
                PartitionKey::Host => item.host.as_deref().map(str::to_string),
                PartitionKey::Date => item.time.and_then(|ns| {
                    chrono::DateTime::from_timestamp(
                        ns.div_euclid(1_000_000_000),
                        ns.rem_euclid(1_000_000_000) as u32,
                    )
                    .map(|t| t.format("%Y-%m-%d").to_string())
                }),
                PartitionKey::Probe => item.probe.as_deref().map(str::to_string),
            };
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(key.name());
            dir.push('=');
            hive_escape(value.as_deref().unwrap_or(""), &mut dir);
        }
        Ok(dir)
    }

    fn route(&mut self, item: Item) -> anyhow::Result<()> {
        let id = if self.partition_by.is_empty() {
            if self.partitions.is_empty() {
                self.partitions.push(Partition::new(PathBuf::new()));
            }
            0
        } else {
            let dir = self.partition_dir(&item)?;
            match self.by_key.get(&dir) {
                Some(&id) => id,
                None => {
                    let id = self.partitions.len();
                    self.partitions.push(Partition::new(PathBuf::from(&dir)));
                    self.by_key.insert(dir, id);
                    id
                }
            }
        };
        self.partitions[id].pending.push(item);
        self.pending_total += 1;
        let full = self.plan.row_group_size + self.plan.sort_window;
        if self.partitions[id].pending.len() >= full {
            self.dispatch(id, self.plan.row_group_size)?;
        }
        // With partitions, events wait in many buffers: keep their sum bounded by flushing the
        // largest (a smaller row group, but memory stays bounded whatever the key cardinality).
        if self.pending_total > 2 * full {
            let largest = (0..self.partitions.len())
                .max_by_key(|&i| self.partitions[i].pending.len())
                .unwrap_or(id);
            let len = self.partitions[largest].pending.len();
            self.dispatch(largest, len)?;
        }
        Ok(())
    }

    /// Sorts a partition's waiting events and hands the first `count` to the encoder.
    fn dispatch(&mut self, id: usize, count: usize) -> anyhow::Result<()> {
        let mut items = std::mem::take(&mut self.partitions[id].pending);
        items.sort_by_key(Item::key);
        let rest = items.split_off(count.min(items.len()));
        self.partitions[id].pending = rest;
        self.pending_total -= items.len();
        if items.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.plan.threads {
            self.complete_one()?;
        }
        self.open_sink(id)?;
        self.clock += 1;
        let partition = &mut self.partitions[id];
        partition.last_used = self.clock;
        let Some(sink) = partition.sink.as_mut() else {
            unreachable!("open_sink leaves the partition with a sink");
        };
        // Keys only grow within a file when every row group starts at or after the previous
        // one's end (events without time sort last, so a timed event after them breaks it).
        let (first, last) = (items[0].key(), items[items.len() - 1].key());
        if sink.last_key.is_some_and(|previous| first < previous) {
            sink.sorted = false;
        }
        sink.last_key = Some(last);
        let job = Job {
            items,
            columns: self.plan.columns.clone(),
            schema: self.plan.schema.clone(),
            factory: sink.factory.clone(),
            descriptor: sink.descriptor.clone(),
            row_group: sink.row_groups,
        };
        sink.row_groups += 1;
        let (sender, receiver) = mpsc::sync_channel(1);
        if self.plan.threads == 1 {
            let _ = sender.send(self.pool.install(|| job.encode()));
        } else {
            self.pool.spawn(move || {
                // The receiver only goes away when the run is failing anyway.
                let _ = sender.send(job.encode());
            });
        }
        self.in_flight.push_back(InFlight {
            partition: id,
            result: receiver,
        });
        Ok(())
    }

    /// Waits for the oldest row group in flight and appends it to its file.
    fn complete_one(&mut self) -> anyhow::Result<()> {
        let Some(done) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let chunks = done.result.recv().context("an encoding thread stopped")??;
        let Some(sink) = self.partitions[done.partition].sink.as_mut() else {
            unreachable!("a partition keeps its sink while row groups are in flight");
        };
        let mut row_group = sink
            .writer
            .next_row_group()
            .context("cannot write a row group")?;
        for chunk in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .context("cannot write a row group")?;
        }
        row_group.close().context("cannot write a row group")?;
        Ok(())
    }

    fn open_sink(&mut self, id: usize) -> anyhow::Result<()> {
        if self.partitions[id].sink.is_some() {
            return Ok(());
        }
        let open = self.partitions.iter().filter(|p| p.sink.is_some()).count();
        if open >= self.max_open_files {
            let oldest = (0..self.partitions.len())
                .filter(|&i| self.partitions[i].sink.is_some())
                .min_by_key(|&i| self.partitions[i].last_used);
            if let Some(oldest) = oldest {
                while !self.in_flight.is_empty() {
                    self.complete_one()?;
                }
                self.close_sink(oldest)?;
            }
        }
        let (out, rename): (Box<dyn Write + Send>, _) = match &self.destination {
            Destination::Stdout => (Box::new(io::stdout()), None),
            Destination::File(path) => match crate::cli::output_path(path)? {
                crate::cli::OutputPath::Special(file) => (Box::new(file), None),
                crate::cli::OutputPath::Regular(path) => {
                    let (file, temp) = temp_file(&path)?;
                    (Box::new(file), Some((temp, path)))
                }
            },
            Destination::Dataset(root) => {
                let dir = root.join(&self.partitions[id].dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                self.file_seq += 1;
                let path = dir.join(format!("part-{}-{:05}.parquet", self.run_id, self.file_seq));
                let (file, temp) = temp_file(&path)?;
                (Box::new(file), Some((temp, path)))
            }
        };
        let options = ArrowWriterOptions::new().with_properties(self.plan.properties.clone());
        let writer = ArrowWriter::try_new_with_options(out, self.plan.schema.clone(), options)
            .context("cannot start a Parquet file")?;
        let (writer, factory) = writer
            .into_serialized_writer()
            .context("cannot start a Parquet file")?;
        let descriptor = self.plan.descriptor.clone();
        self.partitions[id].sink = Some(Sink {
            writer,
            factory: Arc::new(factory),
            descriptor,
            rename,
            row_groups: 0,
            last_key: None,
            sorted: true,
        });
        Ok(())
    }

    /// Writes the footer of a partition's file; the file waits under its temporary name.
    fn close_sink(&mut self, id: usize) -> anyhow::Result<()> {
        let Some(mut sink) = self.partitions[id].sink.take() else {
            return Ok(());
        };
        let meta = &self.metadata;
        let mut key_values = vec![
            ("trail.parquet_schema", columns::SCHEMA_VERSION.to_string()),
            (
                "trail.sorted",
                if sink.sorted { "file" } else { "row-group" }.to_string(),
            ),
            ("trail.sections", meta.sections.to_string()),
            (
                "trail.headers",
                serde_json::to_string(&meta.headers).unwrap_or_default(),
            ),
        ];
        if !meta.lost.is_empty() {
            key_values.push((
                "trail.lost",
                serde_json::to_string(&meta.lost).unwrap_or_default(),
            ));
        }
        for (key, value) in key_values {
            sink.writer
                .append_key_value_metadata(KeyValue::new(key.to_string(), value));
        }
        let out = sink
            .writer
            .into_inner()
            .context("cannot complete the Parquet file")?;
        drop(out);
        if let Some(pending) = sink.rename {
            self.finished.push(pending);
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        for id in 0..self.partitions.len() {
            while !self.partitions[id].pending.is_empty() {
                self.dispatch(id, self.plan.row_group_size)?;
            }
        }
        while !self.in_flight.is_empty() {
            self.complete_one()?;
        }
        if self.partitions.is_empty() && !matches!(self.destination, Destination::Dataset(_)) {
            // No events: still a valid file, with the schema and no rows.
            self.partitions.push(Partition::new(PathBuf::new()));
            self.open_sink(0)?;
        }
        for id in 0..self.partitions.len() {
            self.close_sink(id)?;
        }
        for (temp, path) in self.finished.drain(..) {
            temp.persist(&path)
                .with_context(|| format!("cannot rename output into {}", path.display()))?;
        }
        Ok(())
    }
}

impl Partition {
    fn new(dir: PathBuf) -> Partition {
        Partition {
            dir,
            pending: Vec::new(),
            sink: None,
            last_used: 0,
        }
    }
}

/// A hidden temporary file next to `path` (so the final rename stays on one file system).
fn temp_file(path: &Path) -> anyhow::Result<(File, tempfile::TempPath)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    use std::os::unix::fs::PermissionsExt;
    // 0666 less the umask, like any file a tool creates (tempfile's default 0600 would hide a
    // shared dataset from its other readers).
    let temp = tempfile::Builder::new()
        .prefix(".trail-")
        .suffix(".parquet.tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    Ok(temp.into_parts())
}

/// A name unique to this run: UTC start time, process id and a random part.
fn run_id() -> String {
    use std::hash::BuildHasher;
    let now = chrono::Utc::now();
    // RandomState is seeded from the OS: enough to keep two runs in the same second apart.
    let random = std::collections::hash_map::RandomState::new()
        .hash_one((now.timestamp_nanos_opt(), std::process::id()));
    format!(
        "{}-{}-{:08x}",
        now.format("%Y%m%dT%H%M%SZ"),
        std::process::id(),
        random as u32
    )
}

/// Escapes a partition value as Hive does (`%XX` for path and glob characters), so Spark,
/// Trino, DuckDB and pyarrow read back the original value. Empty values become Hive's default
/// partition name.
fn hive_escape(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push_str("__HIVE_DEFAULT_PARTITION__");
        return;
    }
    for c in value.chars() {
        let escape = c < ' '
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\x7f'
                    | '{'
                    | '['
                    | ']'
                    | '^'
            );
        if escape {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
}

/// A row group to encode.
struct Job {
    items: Vec<Item>,
    columns: Arc<Vec<&'static Column>>,
    schema: SchemaRef,
    factory: Arc<ArrowRowGroupWriterFactory>,
    descriptor: SchemaDescPtr,
    row_group: usize,
}

/// Events decoded at once within a row group: the decoded rows of one slice are what a worker
/// holds beyond the raw payloads, so this (not the row-group size) bounds their memory.
const SLICE: usize = 8192;

impl Job {
    /// Decodes the events slice by slice, builds the columns of each slice and feeds them to
    /// the row group's column writers (columns in parallel), then closes the writers.
    fn encode(self) -> anyhow::Result<Vec<ArrowColumnChunk>> {
        let mut writers = self.factory.create_column_writers(self.row_group)?;
        // Group the leaf writers by top-level column (a struct column has several leaves).
        let mut groups: Vec<Vec<_>> = (0..self.columns.len()).map(|_| Vec::new()).collect();
        for (leaf, writer) in writers.drain(..).enumerate() {
            groups[self.descriptor.get_column_root_idx(leaf)].push(writer);
        }
        let mut items = self.items.into_iter();
        loop {
            // Taking the slice out of the iterator frees each payload once it is decoded.
            let slice: Vec<Item> = items.by_ref().take(SLICE).collect();
            if slice.is_empty() {
                break;
            }
            let rows: Vec<Row> = slice
                .into_par_iter()
                .with_min_len(512)
                .map(decode_row)
                .collect::<Result<_, StreamError>>()?;
            groups.par_iter_mut().enumerate().try_for_each(
                |(i, writers)| -> anyhow::Result<()> {
                    let array = (self.columns[i].build)(&rows);
                    let field = self.schema.field(i);
                    for (writer, leaf) in writers.iter_mut().zip(compute_leaves(field, &array)?) {
                        writer.write(&leaf)?;
                    }
                    Ok(())
                },
            )?;
        }
        let chunks = groups
            .into_iter()
            .flatten()
            .map(|writer| writer.close())
            .collect::<Result<_, _>>()?;
        Ok(chunks)
    }
}

/// The raw `kind` of a probe section, for kinds this build does not know.
#[derive(serde::Deserialize)]
struct ProbeKindText {
    #[serde(default)]
    kind: String,
}

fn decode_row(item: Item) -> Result<Row, StreamError> {
    let input = &item.section.input;
    let event: Event = rmp_serde::from_slice(&item.payload)
        .map_err(|e| corrupt(input, item.offset, e.to_string()))?;
    // Keys of a map are unique: when it holds as many entries as the event has known sections,
    // there is no unknown section and no need to index the payload (most events).
    let entries = rmp::decode::read_map_len(&mut item.payload.as_slice()).unwrap_or(u32::MAX);
    let unknown_kind = event
        .probe
        .as_ref()
        .is_some_and(|p| p.kind == ProbeKind::Unknown);
    let index = if entries as usize != event.section_count() || unknown_kind {
        Some(RawMap::parse(&item.payload).map_err(|why| corrupt(input, item.offset, why))?)
    } else {
        None
    };
    let probe_kind = match &event.probe {
        None => None,
        Some(p) if p.kind != ProbeKind::Unknown => Some(Cow::Borrowed(p.kind.serde_name())),
        Some(_) => index
            .as_ref()
            .and_then(|index| codec::decode_section::<ProbeKindText>(&item.payload, index, "probe"))
            .and_then(Result::ok)
            .map(|p| Cow::Owned(p.kind)),
    };
    let dissection = event.packet.as_ref().map(crate::model::dissect::dissect);
    let mut extra: Option<serde_json::Map<String, serde_json::Value>> = None;
    for key in index
        .iter()
        .flat_map(|i| i.keys(&item.payload))
        .filter(|k| !SECTIONS.contains(k))
    {
        let bytes = index
            .as_ref()
            .and_then(|i| i.get(&item.payload, key))
            .unwrap_or_default();
        let value = rmp_serde::from_slice::<serde_json::Value>(bytes)
            .unwrap_or_else(|_| serde_json::json!({ "$msgpack": crate::model::event::hex(bytes) }));
        extra
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
    }
    Ok(Row {
        time: item.time,
        host: item.host,
        kernel: item.section.kernel.clone(),
        probe_kind,
        dissection,
        extra: extra.map(|map| serde_json::Value::Object(map).to_string()),
        event,
    })
}

/// The progress line on stderr, when stderr is a terminal, at most four times a second.
struct Progress {
    enabled: bool,
    shown: bool,
    started: Instant,
    last: Instant,
    events: u64,
    bytes: u64,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            enabled: io::stderr().is_terminal(),
            shown: false,
            started: now,
            last: now,
            events: 0,
            bytes: 0,
        }
    }

    fn event(&mut self) {
        self.events += 1;
        if self.enabled && self.events % 4096 == 0 && self.last.elapsed().as_millis() >= 250 {
            self.last = Instant::now();
            self.shown = true;
            self.show("");
        }
    }

    fn show(&self, end: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        // A failed progress write is not worth failing the conversion for.
        let _ = write!(
            io::stderr().lock(),
            "\r\x1b[Ktrail-to-parquet: {} events, {:.1} MB, {:.0} events/s{end}",
            self.events,
            self.bytes as f64 / 1e6,
            self.events as f64 / secs
        );
    }

    /// Shows the final counts on a run long enough to have shown progress.
    fn done(&mut self) {
        if self.shown {
            self.show("\n");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A failed run: end the progress line so the error message starts on its own line.
        if self.shown {
            let _ = writeln!(io::stderr().lock());
        }
    }
}
