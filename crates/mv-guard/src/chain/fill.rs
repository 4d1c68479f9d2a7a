//! The memory fill of `clear-memory` (without `init_on_free=1`) and `wipe-memory`.
//!
//! Freed pages keep their bytes until the kernel hands them out again. To overwrite them, a
//! process asks for (nearly) all free memory and writes a pattern into every page, then exits
//! (its pages go back to the kernel holding the pattern). What a process can get is `MemFree`
//! minus the kernel's reserve: per zone, its `high` watermark plus its protection against
//! allocations from higher zones (`/proc/zoneinfo`). That reserve is large (65 MiB in the 1 GiB
//! lab, where THP raises `min_free_kbytes`), so with `lower_watermarks` the filler first lowers
//! `min_free_kbytes` (to 1 MiB), `watermark_scale_factor` (to 1) and `lowmem_reserve_ratio` (to
//! 0), and restores them once its memory is freed. Filling that far leaves the OOM killer a real
//! chance to run, so the fill happens in a **child process** that first makes itself the OOM
//! killer's first choice (`oom_score_adj` 1000): if memory runs out, the kernel kills the
//! filler, never the watcher that still has to power the machine off.
//!
//! The chain starts the child from the command line in [`super::Env::filler`] (the CLI passes
//! `/proc/self/exe guard __fill-memory`), with `--proc DIR --reserve-mib N --lower-watermarks`
//! appended, and kills it when the step's timeout runs out; the child's work is
//! [`fill_free_memory`]. Without a filler the chain fills in its own process, leaving at least
//! [`IN_PROCESS_FLOOR_MIB`].
//!
//! What this module is not: `drop_caches` and `compact_memory`, which the step writes before the
//! fill (the page cache must be freed before it can be overwritten).

use std::path::Path;
use std::time::{Duration, Instant};

/// Without a child filler, the fill in the watcher's own process leaves at least this much free,
/// so the OOM killer has no reason to pick the watcher (the old behaviour).
pub(crate) const IN_PROCESS_FLOOR_MIB: u64 = 256;

/// Allocation unit of the fill.
const CHUNK: u64 = 64 << 20;
/// Below this much room (and no test limit asking for less), a pass stops.
const MIN_CHUNK: u64 = 1 << 20;
/// Passes over free memory: memory freed during one (the pages of a machine destroyed just
/// before, a process exiting) is taken by the next.
const PASSES: usize = 3;
/// The lowered watermarks: `min_free_kbytes`, `watermark_scale_factor`, and 0 for every
/// `lowmem_reserve_ratio`.
const LOW_MIN_FREE_KIB: u64 = 1024;
const LOW_SCALE_FACTOR: u64 = 1;
/// The byte written into every page.
const PATTERN: u8 = 0x5A;

/// Why the filler refused to fill.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// `/proc/self/oom_score_adj` could not be set: without it the OOM killer might pick another
    /// process (the watcher) when memory runs out, so nothing is filled.
    #[error(
        "cannot make the memory filler the OOM killer's first choice (/proc/self/oom_score_adj)"
    )]
    OomScoreAdj(#[source] std::io::Error),
}

/// What one fill did (the filler prints it on stderr, which the watcher's log keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillReport {
    /// `MemFree` before the fill, KiB.
    pub free_before_kib: u64,
    /// `Cached` before the fill, KiB (small once `drop_caches` freed the page cache).
    pub cached_before_kib: u64,
    /// What the fill left free on purpose: the kernel's reserve plus `reserve_mib`, KiB.
    pub reserve_kib: u64,
    /// Bytes written.
    pub filled: u64,
    /// `MemFree` with the fill still held, KiB.
    pub free_after_kib: u64,
    /// This process's `oom_score_adj` during the fill (`None`: not set, the in-process fill).
    pub oom_score_adj: Option<i32>,
    /// Whether the kernel's watermarks were lowered for the fill (and restored after).
    pub lowered: bool,
    /// How long the fill took.
    pub elapsed: Duration,
}

impl std::fmt::Display for FillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: u64| kib / 1024;
        write!(
            f,
            "wipe-free-memory: filled {} MiB in {:.2} s (MemFree {} -> {} MiB, reserve {} MiB{}, \
             Cached before {} MiB, oom_score_adj {})",
            self.filled >> 20,
            self.elapsed.as_secs_f64(),
            mib(self.free_before_kib),
            mib(self.free_after_kib),
            mib(self.reserve_kib),
            if self.lowered {
                " with the watermarks lowered"
            } else {
                ""
            },
            mib(self.cached_before_kib),
            self.oom_score_adj
                .map_or_else(|| "unchanged".to_string(), |a| a.to_string()),
        )
    }
}

/// A field of `<proc>/meminfo`, in KiB.
pub(crate) fn meminfo_kib(proc_root: &Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join("meminfo")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The kernel's reserve in KiB: per zone of `<proc>/zoneinfo`, its `high` watermark (kswapd
/// stops reclaiming above it) plus its largest `protection` (what it keeps from allocations that
/// prefer a higher zone, as user memory does), at most its free pages; in pages of 4 KiB. Else
/// twice `<proc>/sys/vm/min_free_kbytes`, else 64 MiB.
pub(crate) fn kernel_reserve_kib(proc_root: &Path) -> u64 {
    let page_kib = 4;
    if let Ok(text) = std::fs::read_to_string(proc_root.join("zoneinfo")) {
        // (free, high, protection) of the zone being read.
        let mut zones: Vec<(Option<u64>, u64, u64)> = Vec::new();
        for l in text.lines() {
            let l = l.trim();
            if l.starts_with("Node ") && l.contains(" zone ") {
                zones.push((None, 0, 0));
                continue;
            }
            let Some(z) = zones.last_mut() else { continue };
            if let Some(v) = l.strip_prefix("pages free") {
                z.0 = v.trim().parse().ok();
            } else if let Some(v) = l.strip_prefix("high ") {
                z.1 = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = l.strip_prefix("protection:") {
                z.2 = v
                    .trim_matches(|c: char| c == ' ' || c == '(' || c == ')')
                    .split(',')
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
            }
        }
        let pages: u64 = zones
            .iter()
            .map(|&(free, high, prot)| free.map_or(high + prot, |f| f.min(high + prot)))
            .sum();
        if pages > 0 {
            return pages * page_kib;
        }
    }
    std::fs::read_to_string(proc_root.join("sys/vm/min_free_kbytes"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(64 * 1024, |k| k * 2)
}

/// The kernel's watermark settings as they were before [`lower_watermarks`]: (file, old text).
struct Saved(Vec<(std::path::PathBuf, String)>);

/// Lowers `min_free_kbytes`, `watermark_scale_factor` and `lowmem_reserve_ratio` under
/// `<proc>/sys/vm`, so a fill can take nearly every free page. Returns what to restore (only the
/// files it changed).
fn lower_watermarks(proc_root: &Path) -> Saved {
    let vm = proc_root.join("sys/vm");
    let mut saved = Vec::new();
    let mut set = |name: &str, value: &dyn Fn(&str) -> String| {
        let p = vm.join(name);
        if let Ok(old) = std::fs::read_to_string(&p) {
            if std::fs::write(&p, value(old.trim())).is_ok() {
                saved.push((p, old.trim().to_string()));
            }
        }
    };
    // Ratios first: the watermarks are computed from them.
    set("lowmem_reserve_ratio", &|old| {
        vec!["0"; old.split_whitespace().count().max(1)].join(" ")
    });
    set("watermark_scale_factor", &|_| LOW_SCALE_FACTOR.to_string());
    set("min_free_kbytes", &|_| LOW_MIN_FREE_KIB.to_string());
    Saved(saved)
}

/// Puts back what [`lower_watermarks`] changed, in reverse order.
fn restore_watermarks(saved: Saved) {
    for (p, old) in saved.0.into_iter().rev() {
        let _ = std::fs::write(p, old);
    }
}

/// Fills free memory down to `reserve_kib` (`limit` caps the bytes: tests), holds it, then frees
/// it. Up to [`PASSES`] passes, each filling `MemFree` minus the reserve as read at its start, 64
/// MiB at a time; `MemFree` is read again before each 64 MiB so a pass stops early if something
/// else took memory meanwhile.
pub(crate) fn fill(proc_root: &Path, reserve_kib: u64, limit: Option<u64>) -> FillReport {
    let started = Instant::now();
    let free_before_kib = meminfo_kib(proc_root, "MemFree").unwrap_or(0);
    let cached_before_kib = meminfo_kib(proc_root, "Cached").unwrap_or(0);
    let room = || {
        meminfo_kib(proc_root, "MemFree")
            .unwrap_or(0)
            .saturating_sub(reserve_kib)
            * 1024
    };
    let pattern = vec![PATTERN; MIN_CHUNK as usize];
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut done = 0u64;
    for _ in 0..PASSES {
        let mut target = done + room();
        if let Some(l) = limit {
            target = target.min(l);
        }
        if target - done < MIN_CHUNK.min(limit.unwrap_or(u64::MAX)) {
            break;
        }
        while done < target {
            let left = target - done;
            let n = left.min(CHUNK).min(room());
            if n == 0 || (n < MIN_CHUNK && n < left) {
                break;
            }
            let Ok(n) = usize::try_from(n) else { break };
            let mut v: Vec<u8> = Vec::new();
            if v.try_reserve_exact(n).is_err() {
                break;
            }
            // Every byte written (memcpy, fast even in a debug build): the kernel hands out
            // zeroed pages on the first touch, the pattern then marks them as ours.
            while v.len() < n {
                let k = (n - v.len()).min(pattern.len());
                v.extend_from_slice(&pattern[..k]);
                // The filler inherits the watcher's SCHED_FIFO (the service units): without a
                // yield it would hold a CPU from the watcher's own thread, which must be able
                // to kill it when the step's time is up.
                std::thread::yield_now();
            }
            std::hint::black_box(&v);
            held.push(v);
            done += n as u64;
        }
    }
    let free_after_kib = meminfo_kib(proc_root, "MemFree").unwrap_or(0);
    drop(held);
    FillReport {
        free_before_kib,
        cached_before_kib,
        reserve_kib,
        filled: done,
        free_after_kib,
        oom_score_adj: None,
        lowered: false,
        elapsed: started.elapsed(),
    }
}

/// The filler child's work (`multiverse guard __fill-memory`): makes this process the OOM
/// killer's first choice (`/proc/self/oom_score_adj` = 1000, refused without it), with
/// `lower_watermarks` lowers the kernel's watermarks (`<proc_root>/sys/vm`, restored after),
/// then fills free memory down to the kernel's reserve (from `<proc_root>`) plus `reserve_mib`.
/// `limit` caps the bytes (tests). Run it only in a process of its own: it may be killed.
pub fn fill_free_memory(
    proc_root: &Path,
    reserve_mib: u64,
    lower_watermarks: bool,
    limit: Option<u64>,
) -> Result<FillReport, FillError> {
    let adj = Path::new("/proc/self/oom_score_adj");
    std::fs::write(adj, "1000").map_err(FillError::OomScoreAdj)?;
    let oom_score_adj = std::fs::read_to_string(adj)
        .map_err(FillError::OomScoreAdj)?
        .trim()
        .parse::<i32>()
        .ok();
    if oom_score_adj != Some(1000) {
        return Err(FillError::OomScoreAdj(std::io::Error::other(format!(
            "reads back as {oom_score_adj:?}"
        ))));
    }
    let saved = lower_watermarks
        .then(|| self::lower_watermarks(proc_root))
        .filter(|s| !s.0.is_empty());
    let reserve_kib = kernel_reserve_kib(proc_root) + reserve_mib * 1024;
    let mut report = fill(proc_root, reserve_kib, limit);
    report.lowered = saved.is_some();
    if let Some(saved) = saved {
        restore_watermarks(saved);
    }
    report.oom_score_adj = oom_score_adj;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(meminfo: &str, zoneinfo: Option<&str>, min_free: Option<&str>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("meminfo"), meminfo).unwrap();
        if let Some(z) = zoneinfo {
            std::fs::write(d.path().join("zoneinfo"), z).unwrap();
        }
        if let Some(m) = min_free {
            std::fs::create_dir_all(d.path().join("sys/vm")).unwrap();
            std::fs::write(d.path().join("sys/vm/min_free_kbytes"), m).unwrap();
        }
        d
    }

    /// DMA: 3968 free, high 16, protection up to 3000 (from higher zones); DMA32: 100 free (less
    /// than its high watermark); Normal: plenty free, high 25557, no protection.
    const ZONEINFO: &str = "Node 0, zone      DMA\n  per-node stats\n      nr_inactive_anon 1\n  \
        pages free     3968\n        boost    0\n        min      10\n        low      13\n        \
        high     16\n        spanned  4095\n        protection: (0, 2000, 3000, 3000)\n\
        Node 0, zone    DMA32\n  pages free     100\n        \
        min      2115\n        low      2887\n        high     3659\n        protection: (0, 0, 1, 1)\n\
        Node 0, zone   Normal\n  pages free     900000\n        min      14769\n        \
        high     25557\n        protection: (0, 0, 0, 0)\n";

    #[test]
    fn the_kernel_reserve_is_the_zones_high_watermarks_and_protection() {
        let d = fixture("MemFree: 1 kB\n", Some(ZONEINFO), Some("8000\n"));
        assert_eq!(kernel_reserve_kib(d.path()), (16 + 3000 + 100 + 25557) * 4);
        let d = fixture("MemFree: 1 kB\n", None, Some("8000\n"));
        assert_eq!(kernel_reserve_kib(d.path()), 16_000);
        let d = fixture("MemFree: 1 kB\n", None, None);
        assert_eq!(kernel_reserve_kib(d.path()), 64 * 1024);
        // The real one.
        let real = kernel_reserve_kib(Path::new("/proc"));
        assert!(real > 0 && real < 4 * 1024 * 1024, "{real}");
    }

    /// On a fixture procfs: the three settings lowered (every ratio to 0), then restored.
    #[test]
    fn the_watermarks_are_lowered_then_restored() {
        let d = fixture("MemFree: 1 kB\n", None, Some("67584\n"));
        let vm = d.path().join("sys/vm");
        std::fs::write(vm.join("lowmem_reserve_ratio"), "256\t256\t32\t0\t0\n").unwrap();
        std::fs::write(vm.join("watermark_scale_factor"), "10\n").unwrap();
        let read = |n: &str| std::fs::read_to_string(vm.join(n)).unwrap();
        let saved = lower_watermarks(d.path());
        assert_eq!(read("lowmem_reserve_ratio"), "0 0 0 0 0");
        assert_eq!(read("watermark_scale_factor"), "1");
        assert_eq!(read("min_free_kbytes"), "1024");
        restore_watermarks(saved);
        assert_eq!(read("lowmem_reserve_ratio"), "256\t256\t32\t0\t0");
        assert_eq!(read("watermark_scale_factor"), "10");
        assert_eq!(read("min_free_kbytes"), "67584");
        // Nothing to lower: nothing saved.
        assert!(lower_watermarks(Path::new("/nonexistent-proc"))
            .0
            .is_empty());
    }

    #[test]
    fn the_fill_writes_up_to_the_limit() {
        let r = fill(Path::new("/proc"), 0, Some(3 * 1024 * 1024));
        assert_eq!(r.filled, 3 * 1024 * 1024);
        assert!(r.free_before_kib > 0 && r.oom_score_adj.is_none(), "{r:?}");
    }

    #[test]
    fn the_fill_stops_at_the_reserve() {
        // 5 MiB free, 3 MiB reserve: 2 MiB a pass (the fixture's MemFree never changes, so
        // each of the three passes finds 2 MiB again), whatever the limit.
        let d = fixture(
            "MemTotal: 999999 kB\nMemFree:  5120 kB\nCached:  77 kB\n",
            None,
            None,
        );
        let r = fill(d.path(), 3 * 1024, Some(64 << 20));
        assert_eq!(r.filled, 3 * (2 << 20));
        assert_eq!((r.free_before_kib, r.cached_before_kib), (5120, 77));
        assert!(r.to_string().contains("filled 6 MiB"), "{r}");
        assert_eq!(fill(d.path(), 3 * 1024, Some(3 << 20)).filled, 3 << 20);
        // No room at all (or no meminfo): nothing.
        assert_eq!(fill(d.path(), 6 * 1024, None).filled, 0);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(fill(empty.path(), 0, None).filled, 0);
    }

    #[test]
    fn meminfo_fields_are_read_by_exact_name() {
        let d = fixture(
            "MemFree:  12 kB\nMemFreeX: 99 kB\nCached: 5 kB\nSwapCached: 7 kB\n",
            None,
            None,
        );
        assert_eq!(meminfo_kib(d.path(), "MemFree"), Some(12));
        assert_eq!(meminfo_kib(d.path(), "Cached"), Some(5));
        assert_eq!(meminfo_kib(d.path(), "Absent"), None);
    }
}
