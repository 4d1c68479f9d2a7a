//! The host side of the virtio-serial channels: the host agent reaches each guest's agent through
//! the unix socket QEMU makes for the guest's `org.multiverse.agent.0` port, and serves it at
//! `/v1/machines/{fqdn}/...`.
//!
//! Convention (see docs/agent.md): the domain's channel is
//! `<channel type='unix'><source mode='bind' path='{channel_dir}/{fqdn}.sock'/>
//!  <target type='virtio' name='org.multiverse.agent.0'/></channel>`, so the folder lists the
//! machines. A channel is one byte stream, so requests to one guest are sent one at a time over one
//! kept-alive HTTP/1.1 connection; a failed or timed-out request drops the connection and the next
//! one reconnects. Guest replies are size-limited (they come from a less trusted machine).

use crate::action::ProxyMethod;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mv_core::MachineName;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Largest guest reply forwarded.
pub(crate) const MAX_GUEST_REPLY: usize = 4 << 20;

/// One guest channel found in the channel folder.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GuestChannel {
    /// The machine.
    pub fqdn: String,
    /// Its channel socket.
    pub socket: PathBuf,
}

/// Why a forwarded request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No channel socket for that machine.
    #[error("no agent channel for {fqdn} (expected {path})")]
    NoChannel {
        /// The machine.
        fqdn: String,
        /// Where the socket should be.
        path: PathBuf,
    },
    /// Connecting to the channel failed.
    #[error("cannot connect to {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// HTTP over the channel failed.
    #[error("talking to the agent of {fqdn}")]
    Http {
        /// The machine.
        fqdn: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The guest's reply was too large or broken.
    #[error("the reply of {0}'s agent is too large or broken")]
    Body(String),
    /// The reply carried another request's id: bytes left on the channel from an earlier
    /// connection. The connection is dropped.
    #[error("{0}'s agent answered an earlier request; the channel is reset")]
    Stale(String),
    /// No reply in time.
    #[error("{fqdn}'s agent did not answer within {after:?}")]
    Timeout {
        /// The machine.
        fqdn: String,
        /// The limit.
        after: Duration,
    },
}

impl ProxyError {
    /// The status the host answers with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            ProxyError::NoChannel { .. } => 404,
            ProxyError::Timeout { .. } => 504,
            _ => 502,
        }
    }
}

type Conn = Arc<Mutex<Option<SendRequest<Empty<Bytes>>>>>;

/// The channels of every guest.
#[derive(Debug)]
pub(crate) struct Channels {
    dir: PathBuf,
    timeout: Duration,
    conns: std::sync::Mutex<HashMap<String, Conn>>,
}

impl Channels {
    /// Channels in `dir`, each request bounded by `timeout`.
    pub(crate) fn new(dir: PathBuf, timeout: Duration) -> Self {
        Channels {
            dir,
            timeout,
            conns: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The machines that have a channel socket, sorted by name.
    pub(crate) fn list(&self) -> Vec<GuestChannel> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "sock") {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        if MachineName::parse(stem).is_ok() {
                            out.push(GuestChannel {
                                fqdn: stem.to_string(),
                                socket: p.clone(),
                            });
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
        out
    }

    /// Sends one request to a guest's agent; returns status, content type and body.
    pub(crate) async fn forward(
        &self,
        fqdn: &MachineName,
        method: ProxyMethod,
        target: &str,
    ) -> Result<(u16, &'static str, Bytes), ProxyError> {
        let path = self.dir.join(format!("{}.sock", fqdn.as_str()));
        if !path.exists() {
            return Err(ProxyError::NoChannel {
                fqdn: fqdn.as_str().to_string(),
                path,
            });
        }
        let conn = {
            let mut m = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(fqdn.as_str().to_string()).or_default().clone()
        };
        let mut guard = conn.lock().await;
        let mut r = tokio::time::timeout(
            self.timeout,
            Self::send(&mut guard, &path, fqdn, method, target),
        )
        .await;
        if matches!(r, Ok(Err(ProxyError::Stale(_)))) {
            // Once more on a new connection: the stale reply has been read off the channel.
            *guard = None;
            r = tokio::time::timeout(
                self.timeout,
                Self::send(&mut guard, &path, fqdn, method, target),
            )
            .await;
        }
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *guard = None;
                Err(e)
            }
            Err(_) => {
                // A half-sent request would desynchronise the stream: start over next time.
                *guard = None;
                Err(ProxyError::Timeout {
                    fqdn: fqdn.as_str().to_string(),
                    after: self.timeout,
                })
            }
        }
    }

    async fn send(
        slot: &mut Option<SendRequest<Empty<Bytes>>>,
        path: &std::path::Path,
        fqdn: &MachineName,
        method: ProxyMethod,
        target: &str,
    ) -> Result<(u16, &'static str, Bytes), ProxyError> {
        let http = |source| ProxyError::Http {
            fqdn: fqdn.as_str().to_string(),
            source,
        };
        if slot.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|source| ProxyError::Connect {
                    path: path.to_path_buf(),
                    source,
                })?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(http)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *slot = Some(sender);
        }
        let Some(sender) = slot.as_mut() else {
            return Err(ProxyError::Body(fqdn.as_str().to_string()));
        };
        sender.ready().await.map_err(http)?;
        let id = crate::request_id::request_id();
        let req = hyper::Request::builder()
            .method(match method {
                ProxyMethod::Get => hyper::Method::GET,
                ProxyMethod::Post => hyper::Method::POST,
            })
            .uri(target)
            .header(hyper::header::HOST, fqdn.as_str())
            .header(crate::request_id::REQUEST_ID, &id)
            .body(Empty::<Bytes>::new())
            .map_err(|_| ProxyError::Body(fqdn.as_str().to_string()))?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let echoed = resp.headers().get(crate::request_id::REQUEST_ID);
        if echoed.is_some_and(|v| v.as_bytes() != id.as_bytes()) {
            return Err(ProxyError::Stale(fqdn.as_str().to_string()));
        }
        let status = resp.status().as_u16();
        let ctype = match resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            Some(t) if t.starts_with("text/plain") => crate::metrics::CONTENT_TYPE,
            _ => "application/json",
        };
        let body = Limited::new(resp.into_body(), MAX_GUEST_REPLY)
            .collect()
            .await
            .map_err(|_| ProxyError::Body(fqdn.as_str().to_string()))?
            .to_bytes();
        Ok((status, ctype, body))
    }
}
