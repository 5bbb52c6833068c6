//! Journeys: the path of one packet through the stack, as the events that share its tracking id.
//!
//! - [`merge`]: reading several inputs as one stream in wall-clock order, journey keys;
//! - [`sort`]: `trail-sort`, events grouped into journeys (exact with spilling, or windowed);
//! - [`track`]: `trail-track`, tracking ids for events without them and links between journeys;
//! - [`extsort`]: the external merge sort behind `trail-sort --memory`.

pub mod extsort;
pub mod merge;
pub mod sort;
pub mod track;
