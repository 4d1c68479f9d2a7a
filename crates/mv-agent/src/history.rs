//! The bounded history: a ring buffer of compact, fixed-size [`Sample`]s, one per tick.
//!
//! Memory is fixed at start (`stats.history` samples of ~80 bytes each): a full buffer drops its
//! oldest sample. `/v1/stats/history?window=5m` returns the samples of the last five minutes.

use crate::stats::Stats;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One point of the history: what a dashboard draws. No heap data, so the buffer's size is fixed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When (ms since the epoch).
    pub t_ms: u64,
    /// CPU busy fraction (0..1), all cores.
    pub cpu: f32,
    /// Memory in use (total - available), bytes.
    pub mem_used: u64,
    /// Memory total, bytes.
    pub mem_total: u64,
    /// Swap in use, bytes.
    pub swap_used: u64,
    /// 1-minute load average.
    pub load1: f32,
    /// Bytes/s received, all interfaces but loopback.
    pub rx_rate: f64,
    /// Bytes/s sent, all interfaces but loopback.
    pub tx_rate: f64,
    /// Bytes/s read, all disks.
    pub disk_read_rate: f64,
    /// Bytes/s written, all disks.
    pub disk_write_rate: f64,
}

impl Sample {
    /// The compact summary of a full stats snapshot.
    pub fn from_stats(s: &Stats) -> Sample {
        let mut out = Sample {
            t_ms: s.time_ms,
            ..Default::default()
        };
        if let Some(c) = &s.cpu.data {
            out.cpu = c.total.usage as f32;
        }
        if let Some(m) = &s.memory.data {
            out.mem_used = m.used;
            out.mem_total = m.total;
            out.swap_used = m.swap_used;
        }
        if let Some(sys) = &s.system.data {
            out.load1 = sys.load[0] as f32;
        }
        if let Some(n) = &s.network.data {
            for i in n.iter().filter(|i| i.name != "lo") {
                out.rx_rate += i.rx_rate;
                out.tx_rate += i.tx_rate;
            }
        }
        if let Some(d) = &s.disks.data {
            for dev in &d.devices {
                out.disk_read_rate += dev.read_rate;
                out.disk_write_rate += dev.write_rate;
            }
        }
        out
    }
}

/// The ring buffer.
#[derive(Debug)]
pub(crate) struct History {
    buf: VecDeque<Sample>,
    cap: usize,
}

impl History {
    /// A buffer of `cap` samples, allocated once.
    pub(crate) fn new(cap: usize) -> Self {
        History {
            buf: VecDeque::with_capacity(cap),
            cap: cap.max(1),
        }
    }

    /// Appends, dropping the oldest sample when full.
    pub(crate) fn push(&mut self, s: Sample) {
        if self.buf.len() == self.cap {
            self.buf.pop_front();
        }
        self.buf.push_back(s);
    }

    /// Samples taken at or after `since_ms`, oldest first.
    pub(crate) fn since(&self, since_ms: u64) -> Vec<Sample> {
        let start = self.buf.partition_point(|s| s.t_ms < since_ms);
        self.buf.range(start..).copied().collect()
    }

    /// Samples held.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Maximum samples held.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_and_wrap() {
        let mut h = History::new(3);
        for t in 1..=5 {
            h.push(Sample {
                t_ms: t * 1000,
                ..Default::default()
            });
        }
        assert_eq!(h.len(), 3);
        let all: Vec<u64> = h.since(0).iter().map(|s| s.t_ms).collect();
        assert_eq!(all, vec![3000, 4000, 5000]);
        assert_eq!(h.since(4000).len(), 2);
        assert!(h.since(6000).is_empty());
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity(cap in 1usize..50, n in 0usize..200) {
            let mut h = History::new(cap);
            for t in 0..n {
                h.push(Sample { t_ms: t as u64, ..Default::default() });
            }
            prop_assert_eq!(h.len(), n.min(cap));
            prop_assert!(h.since(0).windows(2).all(|w| w[0].t_ms < w[1].t_ms));
        }
    }
}
