//! Journey mode: keep every event of a journey (tracking id) that has at least one matching
//! event, in input order.
//!
//! Records wait in one queue, in input order, until their journey's verdict is known well
//! enough; records that always pass (lost, trailer, unknown kinds) and events without a
//! tracking id wait in the same queue so that the output keeps the input's order.
//! - Sorted input (the section's pipeline has `trail-sort`: events grouped by journey): the
//!   queue holds the current journey only; when the next journey (or an event without id)
//!   begins, the verdict is final and the queue is released. Exact, memory bounded by the
//!   longest journey.
//! - Unsorted input: a record leaves the queue once it is older than the window (event time
//!   behind the newest event seen, or number of events after it). A journey that matches
//!   after some of its events left can no longer pull them back: those are counted and
//!   reported. A journey's state lives while it has events in the queue, so events of one
//!   journey further apart than the window are judged as separate journeys.
//! - Either way the queue never holds more than `max_buffered` records; beyond that the
//!   oldest leaves early (and is counted the same way if its journey matches later).

use std::collections::{HashMap, VecDeque};

use crate::model::codec::{Frame, FrameKind};

/// How long an event of unsorted input waits for its journey to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Event-time nanoseconds behind the newest event seen.
    Time(u64),
    /// Number of events that arrived after it.
    Events(usize),
}

impl std::str::FromStr for Window {
    type Err = String;
    /// A bare number counts events; anything with a unit is a duration, read by the one
    /// duration parser of every tool ([`crate::cli::parse::parse_duration`]).
    fn from_str(text: &str) -> Result<Window, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(Window::Events)
                .ok_or_else(|| {
                    format!("'{text}' is not a window: give a number of events or a time like 2s")
                });
        }
        crate::cli::parse::parse_duration(text).map(Window::Time)
    }
}

/// Journey identity: `(tracking.first_seen, tracking.orig_head)`, as `Tracking::id` shows it.
pub type Key = (u64, u64);

/// What the queue needs to know about an arriving event.
pub struct Arrival {
    pub key: Option<Key>,
    /// The event's own verdict (before `--invert`).
    pub own: bool,
    /// `common.timestamp`, when the event has one.
    pub time: Option<u64>,
    /// `tracking.index` (set by trail-sort).
    pub index: Option<u64>,
}

/// A record waiting for its verdict.
pub struct Pending {
    pub frame: Frame,
    /// Index of the input it came from (for messages of the text printer).
    pub input: usize,
    key: Option<Key>,
    /// The event's own verdict (before `--invert`); unused for records that always pass.
    own: bool,
    time: u64,
}

#[derive(Default)]
struct State {
    matched: bool,
    queued: u32,
    /// Events of this journey that left the queue before it matched.
    left_unmatched: u64,
}

/// What became of a record leaving the queue.
pub enum Released {
    Keep(Pending),
    Drop(Pending),
}

pub struct Journeys {
    window: Window,
    max_buffered: usize,
    invert: bool,
    sorted: bool,
    queue: VecDeque<Pending>,
    states: HashMap<Key, State>,
    newest: u64,
    /// Sorted input: the journey being collected.
    current: Option<Key>,
    /// Journeys forgotten (no event queued) with events that left unmatched, so that a later
    /// match still counts them; at most `max_buffered` of them, oldest forgotten first.
    forgotten: HashMap<Key, u64>,
    forgotten_order: VecDeque<Key>,
    /// Events whose journey matched after they had left the queue.
    pub late: u64,
    /// Sorted input: journeys that did not start at `tracking.index` 0 (not grouped after all).
    pub split: u64,
    /// Times the queue reached `max_buffered` and released a record early.
    pub overflow: u64,
}

impl Journeys {
    pub fn new(window: Window, max_buffered: usize, invert: bool) -> Journeys {
        Journeys {
            window,
            max_buffered,
            invert,
            sorted: false,
            queue: VecDeque::new(),
            states: HashMap::new(),
            newest: 0,
            current: None,
            forgotten: HashMap::new(),
            forgotten_order: VecDeque::new(),
            late: 0,
            split: 0,
            overflow: 0,
        }
    }

    /// Starts a section; the caller releases everything queued first ([`Journeys::drain`]).
    pub fn section(&mut self, sorted: bool) {
        debug_assert!(self.queue.is_empty());
        self.sorted = sorted;
        self.newest = 0;
        self.current = None;
        self.states.clear();
        self.forgotten.clear();
        self.forgotten_order.clear();
    }

    /// Queues an event. Records ready to leave are handed to `release`, in input order.
    pub fn event(
        &mut self,
        pending_frame: Frame,
        input: usize,
        arrival: Arrival,
        release: &mut dyn FnMut(Released) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let Arrival {
            key,
            own,
            time,
            index,
        } = arrival;
        if self.sorted && key != self.current {
            // The previous journey is complete: its verdict is final.
            if !self.drain(release)? {
                return Ok(false);
            }
            self.current = key;
            if key.is_some() && index.is_some_and(|i| i > 0) {
                self.split += 1;
            }
        }
        let time = time.unwrap_or(self.newest);
        self.newest = self.newest.max(time);
        // Records out of the window leave before this event can vote for their journey: an
        // event is kept when its journey matches within the window after it, not later.
        if !self.release_old(release)? {
            return Ok(false);
        }
        if let Some(key) = key {
            let forgotten = &mut self.forgotten;
            let state = self.states.entry(key).or_insert_with(|| State {
                left_unmatched: forgotten.remove(&key).unwrap_or(0),
                ..State::default()
            });
            state.queued += 1;
            if own && !state.matched {
                state.matched = true;
                self.late += std::mem::take(&mut state.left_unmatched);
            }
        }
        self.queue.push_back(Pending {
            frame: pending_frame,
            input,
            key,
            own,
            time,
        });
        self.release_over(release)
    }

    /// Queues a record that always passes (lost, trailer, unknown kinds), to keep the order.
    pub fn always(
        &mut self,
        frame: Frame,
        input: usize,
        release: &mut dyn FnMut(Released) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        debug_assert!(frame.kind != FrameKind::Event);
        self.queue.push_back(Pending {
            frame,
            input,
            key: None,
            own: true,
            time: self.newest,
        });
        self.release_over(release)
    }

    /// Releases records that waited a whole window. Returns `false` when `release` asks to stop.
    fn release_old(
        &mut self,
        release: &mut dyn FnMut(Released) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        while !self.sorted
            && self.queue.front().is_some_and(|front| match self.window {
                Window::Time(window) => front.time.saturating_add(window) < self.newest,
                Window::Events(window) => self.queue.len() > window,
            })
        {
            if !self.release_front(release)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Releases the oldest records beyond the memory bound.
    fn release_over(
        &mut self,
        release: &mut dyn FnMut(Released) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        while self.queue.len() > self.max_buffered {
            self.overflow += 1;
            if !self.release_front(release)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Releases everything queued (end of a section or of the input).
    pub fn drain(
        &mut self,
        release: &mut dyn FnMut(Released) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        while !self.queue.is_empty() {
            if !self.release_front(release)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn forget(&mut self, key: Key, left_unmatched: u64) {
        self.forgotten.insert(key, left_unmatched);
        self.forgotten_order.push_back(key);
        while self.forgotten_order.len() > self.max_buffered {
            if let Some(old) = self.forgotten_order.pop_front() {
                self.forgotten.remove(&old);
            }
        }
    }

    fn release_front(
        &mut self,
        release: &mut dyn FnMut(Released) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let Some(pending) = self.queue.pop_front() else {
            return Ok(true);
        };
        let keep = match (pending.frame.kind, pending.key) {
            (FrameKind::Event, Some(key)) => {
                let state = self
                    .states
                    .get_mut(&key)
                    .expect("a queued event has a journey state");
                let matched = state.matched;
                if !matched {
                    state.left_unmatched += 1;
                }
                state.queued -= 1;
                if state.queued == 0 {
                    let left = state.left_unmatched;
                    self.states.remove(&key);
                    if left > 0 {
                        self.forget(key, left);
                    }
                }
                matched != self.invert
            }
            (FrameKind::Event, None) => pending.own != self.invert,
            _ => true,
        };
        release(if keep {
            Released::Keep(pending)
        } else {
            Released::Drop(pending)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8) -> Frame {
        Frame {
            kind: if tag == b'E' {
                FrameKind::Event
            } else {
                FrameKind::Lost
            },
            payload: vec![tag],
            ..Frame::default()
        }
    }

    /// Runs `events` (key, own verdict, time) through a window and returns the indexes kept.
    fn kept(
        window: Window,
        sorted: bool,
        events: &[(Option<u64>, bool, u64)],
    ) -> (Vec<usize>, u64) {
        let mut journeys = Journeys::new(window, 1000, false);
        journeys.section(sorted);
        let mut out = Vec::new();
        let mut release = |r: Released| {
            if let Released::Keep(p) = r {
                out.push(p.input);
            }
            Ok(true)
        };
        for (i, (key, own, time)) in events.iter().enumerate() {
            let key = key.map(|k| (k, 0));
            let arrival = Arrival {
                key,
                own: *own,
                time: Some(*time),
                index: None,
            };
            journeys
                .event(frame(b'E'), i, arrival, &mut release)
                .unwrap();
        }
        journeys.drain(&mut release).unwrap();
        (out, journeys.late)
    }

    #[test]
    fn a_late_match_pulls_back_the_events_still_in_the_window() {
        let events = [
            (Some(1), false, 0),
            (Some(2), false, 10),
            (None, true, 20),
            (Some(1), false, 30),
            (Some(1), true, 40),
            (Some(2), false, 50),
        ];
        assert_eq!(
            kept(Window::Time(100), false, &events),
            (vec![0, 2, 3, 4], 0)
        );
        // With a 15 ns window the first event of journey 1 is gone when it matches at 40.
        assert_eq!(kept(Window::Time(15), false, &events), (vec![2, 3, 4], 1));
        assert_eq!(kept(Window::Events(2), false, &events), (vec![2, 3, 4], 1));
    }

    #[test]
    fn sorted_input_is_exact_whatever_the_window() {
        let grouped = [
            (Some(1), false, 0),
            (Some(1), false, 1_000),
            (Some(1), true, 2_000),
            (None, false, 3),
            (Some(2), false, 4),
            (Some(2), false, 5),
            (Some(3), true, 6),
        ];
        assert_eq!(
            kept(Window::Events(1), true, &grouped),
            (vec![0, 1, 2, 6], 0)
        );
    }

    #[test]
    fn windows_parse() {
        assert_eq!("2s".parse(), Ok(Window::Time(2_000_000_000)));
        assert_eq!("1.5ms".parse(), Ok(Window::Time(1_500_000)));
        assert_eq!("5000".parse(), Ok(Window::Events(5000)));
        assert!("0".parse::<Window>().is_err());
        // Units are those of every tool's durations (cli::parse), hours included.
        assert_eq!("2h".parse(), Ok(Window::Time(7_200_000_000_000)));
        assert!("2x".parse::<Window>().is_err());
        assert!("x".parse::<Window>().is_err());
    }
}
