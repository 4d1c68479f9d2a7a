//! A bounded soak: the real agent sampling every 100 ms while two clients hammer the API for
//! 20 seconds. Resident memory after warm-up must not grow (the history ring is full by then, so
//! any growth would be a leak).
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn soak_20s_no_rss_growth() {
    let d = tempfile::tempdir().unwrap();
    let a = start(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/s.sock\"\n[stats]\ninterval = \"100ms\"\nhistory = 40\n",
    );
    let sock = a.socket.clone();
    let stop_at = Instant::now() + Duration::from_secs(20);
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let c = mv_agent::Client::unix(&sock);
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < stop_at {
                    let path = [
                        "/metrics",
                        "/v1/stats",
                        "/v1/stats/history?window=1m",
                        "/v1/health",
                    ][(n as usize + i) % 4];
                    let (st, _) = c.request("GET", path).unwrap();
                    assert_eq!(st, 200);
                    // Some hostile traffic mixed in.
                    if n.is_multiple_of(10) {
                        raw_unix(&sock, b"\x00\x01garbage\r\n\r\n", Duration::from_secs(2));
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    // Warm-up: history full (40 samples at 100 ms = 4 s), allocator arenas settled.
    std::thread::sleep(Duration::from_secs(7));
    let warm = a.rss_kib();
    let mut peak = warm;
    while Instant::now() < stop_at {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(a.rss_kib());
    }
    let requests: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let end = a.rss_kib();
    eprintln!("soak: {requests} requests, RSS warm {warm} KiB, peak {peak} KiB, end {end} KiB");
    assert!(requests > 1000, "only {requests} requests");
    assert!(end <= warm + 1024, "RSS grew from {warm} KiB to {end} KiB");
    assert!(
        peak <= warm + 2048,
        "RSS peaked at {peak} KiB from {warm} KiB"
    );
}
