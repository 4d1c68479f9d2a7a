//! The serial console: QEMU's `ttyS0` on a unix socket. A reader thread appends every byte to an
//! in-memory buffer and to the console log file; waiters search the buffer after a cursor that
//! only moves forward (a match consumes the text up to its end, so the same boot message or
//! marker is never found twice).

use crate::LabError;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    /// (end offset in `data`, arrival instant) of every chunk read.
    arrivals: Vec<(usize, Instant)>,
    cursor: usize,
    closed: bool,
}

/// The console of one lab VM.
pub(crate) struct Console {
    shared: Arc<(Mutex<Buf>, Condvar)>,
    writer: Mutex<UnixStream>,
    log: PathBuf,
}

fn lock(m: &Mutex<Buf>) -> MutexGuard<'_, Buf> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Console {
    /// Starts reading `stream`, logging to `log`.
    pub(crate) fn start(stream: UnixStream, log: &Path) -> Result<Console, LabError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(LabError::io("open the console log"))?;
        let mut reader = stream
            .try_clone()
            .map_err(LabError::io("clone the console socket"))?;
        let shared: Arc<(Mutex<Buf>, Condvar)> = Arc::default();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("mv-lab-console".into())
            .spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match reader.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let _ = file.write_all(&chunk[..n]);
                    let at = Instant::now();
                    let mut b = lock(&s.0);
                    b.data.extend_from_slice(&chunk[..n]);
                    let end = b.data.len();
                    b.arrivals.push((end, at));
                    drop(b);
                    s.1.notify_all();
                }
                lock(&s.0).closed = true;
                s.1.notify_all();
            })
            .map_err(LabError::io("start the console reader"))?;
        Ok(Console {
            shared,
            writer: Mutex::new(stream),
            log: log.to_path_buf(),
        })
    }

    /// The log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Types `bytes`.
    pub(crate) fn send(&self, bytes: &[u8]) -> Result<(), LabError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(bytes)
            .and_then(|()| w.flush())
            .map_err(LabError::io("write to the console"))
    }

    /// Everything received so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.shared.0).data).into_owned()
    }

    /// The last `n` lines received, carriage returns and other control characters dropped.
    pub(crate) fn tail(&self, n: usize) -> String {
        mv_core::text::last_lines(&self.text(), n).join("\n")
    }

    /// Waits until `needle` appears after the cursor; moves the cursor past it and returns the
    /// bytes from the old cursor to the end of the match. `None` on timeout or when the console
    /// closed (QEMU exited) first.
    pub(crate) fn wait_for(&self, needle: &[u8], timeout: Duration) -> Option<Vec<u8>> {
        self.wait_for_timed(needle, timeout).map(|(text, _)| text)
    }

    /// [`Console::wait_for`], also returning when the match's last byte arrived.
    pub(crate) fn wait_for_timed(
        &self,
        needle: &[u8],
        timeout: Duration,
    ) -> Option<(Vec<u8>, Instant)> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut b = lock(m);
        loop {
            if let Some(pos) = find(&b.data[b.cursor..], needle) {
                let start = b.cursor;
                let end = start + pos + needle.len();
                b.cursor = end;
                let i = b.arrivals.partition_point(|(e, _)| *e < end);
                let at = b.arrivals.get(i).map_or_else(Instant::now, |(_, at)| *at);
                return Some((b.data[start..end].to_vec(), at));
            }
            let now = Instant::now();
            if b.closed || now >= deadline {
                return None;
            }
            b = cv
                .wait_timeout(b, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Whether QEMU closed the console.
    #[cfg(test)]
    pub(crate) fn closed(&self) -> bool {
        lock(&self.shared.0).closed
    }
}

/// The first position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_consumes() {
        let (a, b) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = Console::start(a, &dir.path().join("log")).unwrap();
        let mut b2 = b.try_clone().unwrap();
        b2.write_all(b"boot\r\nlogin: x\r\nlogin: y\r\n").unwrap();
        let got = c.wait_for(b"login:", Duration::from_secs(5)).unwrap();
        assert_eq!(got, b"boot\r\nlogin:");
        let got = c.wait_for(b"login:", Duration::from_secs(5)).unwrap();
        assert_eq!(got, b" x\r\nlogin:");
        let before = Instant::now();
        b2.write_all(b"late line\r\n").unwrap();
        let (got, at) = c.wait_for_timed(b"late", Duration::from_secs(5)).unwrap();
        assert!(got.ends_with(b"late"));
        assert!(at >= before && at <= Instant::now());
        assert!(c.wait_for(b"login:", Duration::from_millis(50)).is_none());
        c.send(b"hi").unwrap();
        let mut got = [0u8; 2];
        (&b).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        assert_eq!(c.tail(1), "late line");
        drop(b);
        drop(b2);
        std::thread::sleep(Duration::from_millis(100));
        assert!(c.closed());
        assert!(std::fs::read_to_string(c.log())
            .unwrap()
            .contains("login: y"));
    }
}
