//! Probe vocabulary shared by capture and the journey stages: what a probe's name says about the
//! packet's life. Capture decides with it when a tracking id ends in the kernel; sort and track
//! decide with it when a journey has ended, so both sides agree by construction.

/// Tracepoints after which the kernel frees the skb (its tracking id ends there).
pub const END_OF_LIFE_TRACEPOINTS: [&str; 2] = ["kfree_skb", "consume_skb"];

/// Whether an event from the probe named `probe` (`tp:skb:kfree_skb`, `k:kfree_skb_reason`...)
/// marks the end of the packet's life: its name contains an end-of-life tracepoint's.
pub fn is_end_of_life(probe: &str) -> bool {
    END_OF_LIFE_TRACEPOINTS
        .iter()
        .any(|name| probe.contains(name))
}
