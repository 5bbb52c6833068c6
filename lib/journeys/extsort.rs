//! External merge sort of records under a memory budget, for trail-sort's exact mode.
//!
//! Contract: items (a fixed-size key plus a payload) go in through [`ExternalSort::push`]; they
//! come out of [`ExternalSort::finish`] ordered by key (keys must be unique: callers put an
//! arrival sequence number in them). Memory: items are buffered until their accounted size
//! (payload + [`ITEM_OVERHEAD`]) exceeds the budget, then sorted and written to an anonymous
//! temporary file (a run). More than [`FAN_IN`] runs are merged into one as they accumulate,
//! so the merge never holds more than `FAN_IN` read buffers of [`RUN_BUFFER`] bytes plus one
//! item per run. Peak memory is therefore about `budget + FAN_IN × (RUN_BUFFER + largest item)`,
//! whatever the input size; temporary disk use is about the input size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

/// Accounted bytes per buffered item beyond its payload (key, vector headers, allocator slack).
pub const ITEM_OVERHEAD: usize = 96;
/// Most runs merged at once.
pub const FAN_IN: usize = 64;
/// Read buffer per run while merging.
pub const RUN_BUFFER: usize = 64 * 1024;

/// A fixed-size, ordered key that can be written to and read from a run file.
pub trait SortKey: Ord + Clone {
    const SIZE: usize;
    fn write(&self, out: &mut Vec<u8>);
    fn read(bytes: &[u8]) -> Self;
}

/// One record being sorted: its key, its frame tag and its payload.
pub struct Item<K> {
    pub key: K,
    pub tag: u8,
    pub payload: Vec<u8>,
}

/// Counters for the end-of-run report and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct SortStats {
    pub items: u64,
    /// Runs written to temporary files (0: everything fit in memory).
    pub runs: u64,
    pub spilled_bytes: u64,
}

pub struct ExternalSort<K: SortKey> {
    budget: usize,
    used: usize,
    items: Vec<Item<K>>,
    runs: Vec<File>,
    temp_dir: Option<PathBuf>,
    scratch: Vec<u8>,
    pub stats: SortStats,
}

impl<K: SortKey> ExternalSort<K> {
    /// `budget`: bytes of buffered items before spilling; `temp_dir`: where runs go (default:
    /// the system's temporary directory).
    pub fn new(budget: usize, temp_dir: Option<PathBuf>) -> Self {
        ExternalSort {
            budget,
            used: 0,
            items: Vec::new(),
            runs: Vec::new(),
            temp_dir,
            scratch: Vec::new(),
            stats: SortStats::default(),
        }
    }

    pub fn push(&mut self, item: Item<K>) -> io::Result<()> {
        self.used += item.payload.len() + ITEM_OVERHEAD;
        self.items.push(item);
        self.stats.items += 1;
        if self.used > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn temp_file(&self) -> io::Result<File> {
        match &self.temp_dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        self.items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let mut file = BufWriter::with_capacity(RUN_BUFFER, self.temp_file()?);
        for item in self.items.drain(..) {
            write_item(&mut file, &item, &mut self.scratch)?;
            self.stats.spilled_bytes += item.payload.len() as u64;
        }
        // Give the buffer's memory back: the next run may be made of smaller items.
        self.items.shrink_to(1024);
        self.used = 0;
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        self.runs.push(file);
        self.stats.runs += 1;
        if self.runs.len() >= FAN_IN {
            let runs = std::mem::take(&mut self.runs);
            let merged = self.merge_runs(runs)?;
            self.runs.push(merged);
        }
        Ok(())
    }

    /// Merges `runs` into one new run file.
    fn merge_runs(&mut self, runs: Vec<File>) -> io::Result<File> {
        let mut merge = Merge::<K>::new(runs)?;
        let mut file = BufWriter::with_capacity(RUN_BUFFER, self.temp_file()?);
        while let Some(item) = merge.next_item()? {
            write_item(&mut file, &item, &mut self.scratch)?;
        }
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(file)
    }

    /// Ends input; returns the items in key order.
    pub fn finish(mut self) -> io::Result<(Sorted<K>, SortStats)> {
        if self.runs.is_empty() {
            self.items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            return Ok((Sorted::Memory(self.items.into_iter()), self.stats));
        }
        self.spill()?;
        let runs = std::mem::take(&mut self.runs);
        Ok((Sorted::Merge(Merge::new(runs)?), self.stats))
    }
}

fn write_item<K: SortKey>(
    out: &mut impl Write,
    item: &Item<K>,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    scratch.clear();
    item.key.write(scratch);
    debug_assert_eq!(scratch.len(), K::SIZE);
    scratch.push(item.tag);
    scratch.extend_from_slice(&(item.payload.len() as u32).to_le_bytes());
    out.write_all(scratch)?;
    out.write_all(&item.payload)
}

/// Sorted output: straight from memory, or merged from runs.
pub enum Sorted<K: SortKey> {
    Memory(std::vec::IntoIter<Item<K>>),
    Merge(Merge<K>),
}

impl<K: SortKey> Sorted<K> {
    pub fn next_item(&mut self) -> io::Result<Option<Item<K>>> {
        match self {
            Sorted::Memory(items) => Ok(items.next()),
            Sorted::Merge(merge) => merge.next_item(),
        }
    }
}

struct Run<K> {
    reader: BufReader<File>,
    current: Option<Item<K>>,
    head: Vec<u8>,
}

impl<K: SortKey> Run<K> {
    fn advance(&mut self) -> io::Result<()> {
        self.head.resize(K::SIZE + 5, 0);
        // A run ends exactly at an item boundary: a short read of the item head is the end.
        let mut filled = 0;
        while filled < self.head.len() {
            let n = self.reader.read(&mut self.head[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            self.current = None;
            return Ok(());
        }
        if filled < self.head.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "temporary run file truncated",
            ));
        }
        let key = K::read(&self.head[..K::SIZE]);
        let tag = self.head[K::SIZE];
        let len = u32::from_le_bytes(
            self.head[K::SIZE + 1..K::SIZE + 5]
                .try_into()
                .unwrap_or([0; 4]),
        ) as usize;
        let mut payload = vec![0u8; len];
        self.reader.read_exact(&mut payload)?;
        self.current = Some(Item { key, tag, payload });
        Ok(())
    }
}

/// K-way merge of sorted runs.
pub struct Merge<K: SortKey> {
    runs: Vec<Run<K>>,
    heap: BinaryHeap<Reverse<(KeyRef<K>, usize)>>,
}

/// Heap entry: a copy of the run's current key, so the heap need not borrow the runs.
struct KeyRef<K>(K);

impl<K: Ord> PartialEq for KeyRef<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord> Eq for KeyRef<K> {}
impl<K: Ord> PartialOrd for KeyRef<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord> Ord for KeyRef<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K: SortKey> Merge<K> {
    fn new(files: Vec<File>) -> io::Result<Self> {
        let mut merge = Merge {
            runs: Vec::with_capacity(files.len()),
            heap: BinaryHeap::with_capacity(files.len()),
        };
        for file in files {
            let mut run = Run {
                reader: BufReader::with_capacity(RUN_BUFFER, file),
                current: None,
                head: Vec::new(),
            };
            run.advance()?;
            merge.runs.push(run);
        }
        for i in 0..merge.runs.len() {
            merge.push_key(i);
        }
        Ok(merge)
    }

    fn push_key(&mut self, i: usize) {
        if let Some(item) = &self.runs[i].current {
            self.heap.push(Reverse((KeyRef(item.key.clone()), i)));
        }
    }

    pub fn next_item(&mut self) -> io::Result<Option<Item<K>>> {
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let item = self.runs[i].current.take();
        self.runs[i].advance()?;
        self.push_key(i);
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(PartialEq, Eq, PartialOrd, Ord, Debug, Clone, Copy)]
    struct Key(u64);

    impl SortKey for Key {
        const SIZE: usize = 8;
        fn write(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
        }
        fn read(bytes: &[u8]) -> Self {
            Key(u64::from_be_bytes(bytes.try_into().unwrap()))
        }
    }

    fn sorted(budget: usize, keys: &[u64]) -> (Vec<u64>, SortStats) {
        let mut sort = ExternalSort::new(budget, None);
        for &k in keys {
            sort.push(Item {
                key: Key(k),
                tag: b'E',
                payload: k.to_le_bytes().to_vec(),
            })
            .unwrap();
        }
        let (mut out, stats) = sort.finish().unwrap();
        let mut keys = Vec::new();
        while let Some(item) = out.next_item().unwrap() {
            assert_eq!(
                item.payload,
                item.key.0.to_le_bytes(),
                "payload follows its key"
            );
            keys.push(item.key.0);
        }
        (keys, stats)
    }

    #[test]
    fn spills_and_merges_in_order() {
        let input: Vec<u64> = (0..20_000u64).map(|i| (i * 7919) % 20_011).collect();
        let mut expected = input.clone();
        expected.sort();
        let (memory, stats) = sorted(usize::MAX, &input);
        assert_eq!(stats.runs, 0);
        assert_eq!(memory, expected);
        // ~100 items per run: 200 runs, so intermediate merges happen too.
        let (spilled, stats) = sorted(100 * (8 + ITEM_OVERHEAD), &input);
        assert!(stats.runs > FAN_IN as u64, "runs {}", stats.runs);
        assert_eq!(spilled, expected);
    }
}
