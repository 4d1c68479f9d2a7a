//! The request id that pairs a reply with its request on a byte stream that outlives connections
//! (a virtio-serial channel): the client and the host proxy send one, the agent echoes it. Not an
//! authentication token: it only tells a stale reply from the awaited one.

/// The header a client names its request by, echoed by the agent on the reply.
pub const REQUEST_ID: &str = "X-Request-Id";

/// A request id unique on this host for this process's lifetime: pid, clock and a counter.
#[cfg_attr(not(any(feature = "client", feature = "server")), allow(dead_code))]
pub(crate) fn request_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}
