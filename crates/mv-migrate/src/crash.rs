//! Crash injection for tests: abort the process at the N-th crash point.
//!
//! A crash point is every fsync'd journal record and every moment inside an operation where its
//! effect is on disk but not yet recorded (after a rename, after a verified copy, before removing
//! the source). With the `test-hooks` feature, setting the hidden environment variable
//! [`CRASH_ENV`] to `N` makes the process call `abort()` (no destructors, no flushing: as abrupt as
//! `kill -9` for our files) when it reaches the N-th point. Without the feature (every build but
//! the tests') [`point`] is empty: no environment variable can abort a product build.

#[cfg(feature = "test-hooks")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "test-hooks")]
use std::sync::OnceLock;

/// Environment variable naming the crash point (1-based) at which to abort.
#[cfg(feature = "test-hooks")]
pub const CRASH_ENV: &str = "MV_MIGRATE_CRASH_AFTER";

#[cfg(feature = "test-hooks")]
static COUNT: AtomicU64 = AtomicU64::new(0);
#[cfg(feature = "test-hooks")]
static LIMIT: OnceLock<Option<u64>> = OnceLock::new();

/// Marks a crash point; aborts the process here if it is the one asked for.
#[cfg(feature = "test-hooks")]
pub(crate) fn point() {
    let limit = LIMIT.get_or_init(|| {
        std::env::var(CRASH_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
    });
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if *limit == Some(n) {
        std::process::abort();
    }
}

/// Marks a crash point: nothing, without the `test-hooks` feature.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn point() {}
