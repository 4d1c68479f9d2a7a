//! A QMP client: one unix socket, capabilities negotiated on connect, commands with an `id` and
//! their replies matched by it, and every asynchronous event kept with the instant it arrived.
//!
//! A reader thread owns the read half: each line is a reply (`return` or `error`, with our `id`),
//! an event (`event`, `data`, `timestamp`) or the greeting. Commands may be issued from several
//! threads at once.

use crate::LabError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One QMP event, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its name (`SHUTDOWN`, `DEVICE_DELETED`, …).
    pub name: String,
    /// Its `data` member (`Null` when absent).
    pub data: Value,
    /// When the client read it.
    pub at: Instant,
    /// QEMU's own timestamp (seconds since the epoch, microsecond precision).
    pub timestamp: f64,
}

#[derive(Default)]
struct State {
    replies: HashMap<u64, Value>,
    events: Vec<Event>,
    /// Whether `wait_event` returned the event of the same index.
    taken: Vec<bool>,
    closed: bool,
}

/// A connected QMP client.
pub struct Qmp {
    writer: Mutex<UnixStream>,
    shared: Arc<(Mutex<State>, Condvar)>,
    next_id: AtomicU64,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").finish_non_exhaustive()
    }
}

impl Qmp {
    /// Takes over a connected socket and negotiates capabilities.
    pub fn connect(stream: UnixStream, timeout: Duration) -> Result<Qmp, LabError> {
        let reader = stream
            .try_clone()
            .map_err(LabError::io("clone the QMP socket"))?;
        let shared: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("mv-lab-qmp".into())
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    let Ok(v) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let mut st = lock(&s.0);
                    if let Some(name) = v.get("event").and_then(Value::as_str) {
                        let ts = &v["timestamp"];
                        let timestamp = ts["seconds"].as_f64().unwrap_or(0.0)
                            + ts["microseconds"].as_f64().unwrap_or(0.0) / 1e6;
                        st.taken.push(false);
                        st.events.push(Event {
                            name: name.to_string(),
                            data: v.get("data").cloned().unwrap_or(Value::Null),
                            at: Instant::now(),
                            timestamp,
                        });
                    } else if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        st.replies.insert(id, v);
                    }
                    drop(st);
                    s.1.notify_all();
                }
                lock(&s.0).closed = true;
                s.1.notify_all();
            })
            .map_err(LabError::io("start the QMP reader"))?;
        let q = Qmp {
            writer: Mutex::new(stream),
            shared,
            next_id: AtomicU64::new(1),
        };
        q.execute("qmp_capabilities", Value::Null, timeout)?;
        Ok(q)
    }

    /// Runs `command` with `arguments` (`Value::Null` for none); returns its `return` member, or
    /// [`LabError::Qmp`] with QEMU's error class and message.
    pub fn execute(
        &self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, LabError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "execute": command, "id": id });
        if !arguments.is_null() {
            msg["arguments"] = arguments;
        }
        let line = msg.to_string() + "\n";
        {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            w.write_all(line.as_bytes())
                .and_then(|()| w.flush())
                .map_err(LabError::io("write to QMP"))?;
        }
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut st = lock(m);
        loop {
            if let Some(reply) = st.replies.remove(&id) {
                if let Some(err) = reply.get("error") {
                    return Err(LabError::Qmp {
                        command: command.to_string(),
                        class: err["class"].as_str().unwrap_or("?").to_string(),
                        desc: err["desc"].as_str().unwrap_or("?").to_string(),
                    });
                }
                return Ok(reply.get("return").cloned().unwrap_or(Value::Null));
            }
            let now = Instant::now();
            if st.closed {
                return Err(LabError::Protocol(format!(
                    "QEMU closed QMP before answering {command}"
                )));
            }
            if now >= deadline {
                return Err(LabError::Protocol(format!(
                    "no answer to {command} within {} s",
                    timeout.as_secs()
                )));
            }
            st = cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared.0).events.clone()
    }

    /// The oldest event named `name` that no earlier call returned, waiting up to `timeout` for
    /// one to arrive. `None` on timeout or when QMP closed first.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> Option<Event> {
        self.wait_event_matching(name, |_| true, timeout)
    }

    /// [`Qmp::wait_event`] for the oldest such event that `pred` also accepts.
    pub fn wait_event_matching(
        &self,
        name: &str,
        pred: impl Fn(&Event) -> bool,
        timeout: Duration,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut st = lock(m);
        loop {
            let found = st
                .events
                .iter()
                .zip(&st.taken)
                .position(|(e, taken)| !taken && e.name == name && pred(e));
            if let Some(i) = found {
                st.taken[i] = true;
                return Some(st.events[i].clone());
            }
            let now = Instant::now();
            if st.closed || now >= deadline {
                return None;
            }
            st = cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
