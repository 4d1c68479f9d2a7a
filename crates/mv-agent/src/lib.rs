//! `mv-agent`: the Multiverse agent library: one small daemon per machine, whatever its role
//! (host, controller, router, service), with stats, scheduled maintenance and one HTTP/JSON API.
//!
//! Three cargo features, all on by default:
//!
//! - `server`: the daemon itself ([`Agent`], [`bind`], [`config`]), used by the
//!   `multiverse-agent` binary. The shape follows Firecracker: HTTP handlers only *parse* a
//!   request into a typed action; one function runs actions against the [`Agent`] state. The
//!   collectors run with their own timeout each, so a broken one only marks its own section
//!   stale; maintenance tasks run on an interval and on demand; the host agent forwards
//!   `/v1/machines/{fqdn}/...` to its guests over virtio-serial channels; transports are a unix
//!   socket, TCP with a bearer token and virtio-serial, with bounded memory per connection.
//! - `client`: a small blocking client for front ends ([`Client`], [`fleet_status`]), over hyper.
//! - `tui`: the `multiverse top` terminal dashboard ([`run_top`], ratatui); implies `client`.
//!
//! Either of `server` and `client` brings the data model the API speaks: [`stats`] (what
//! `/v1/stats` returns, section by section), [`Sample`] (one point of `/v1/stats/history`),
//! [`TaskInfo`] and [`TaskResult`], [`HostKey`].
//!
//! The workspace's packages take it without default features and name the ones they need
//! (`multiverse`: `tui`; `multiverse-virt`: `client`; `multiverse-agent`: `server`). Two modules are
//! public namespaces on purpose, because their many items read well only qualified: [`config`]
//! (`config::Role`, `config::ApiConfig`, `config::HostConfig`) and [`stats`] (one type per `/v1/stats` section). The rest is
//! private, re-exported here.
//!
//! What this crate is not: a general metrics system (no push, no storage beyond the ring buffer),
//! nor a remote shell: the API runs only the tasks named in the config.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
// The data model keeps helpers only the server uses (parsers, the ring buffer): in a build
// without every feature they are unused, and are checked by the full build instead.
#![cfg_attr(
    not(all(feature = "server", feature = "client", feature = "tui")),
    allow(dead_code, unreachable_pub)
)]

#[cfg(feature = "server")]
mod action;
#[cfg(feature = "server")]
mod agent;
#[cfg(feature = "server")]
mod api;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(any(feature = "server", feature = "client"))]
mod history;
#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
mod proxy;
#[cfg(any(feature = "server", feature = "client"))]
mod request_id;
#[cfg(any(feature = "server", feature = "client"))]
mod selfinfo;
#[cfg(feature = "server")]
mod server;
#[cfg(any(feature = "server", feature = "client"))]
pub mod stats;
#[cfg(any(feature = "server", feature = "client"))]
mod tasks;
#[cfg(feature = "tui")]
mod top;
#[cfg(feature = "server")]
mod util;

#[cfg(any(feature = "server", feature = "client"))]
pub use history::Sample;
#[cfg(any(feature = "server", feature = "client"))]
pub use request_id::REQUEST_ID;
#[cfg(any(feature = "server", feature = "client"))]
pub use selfinfo::{fingerprint_line, HostKey};
#[cfg(any(feature = "server", feature = "client"))]
pub use tasks::{TaskInfo, TaskResult};

#[cfg(feature = "server")]
pub use agent::{Agent, StartError};
#[cfg(feature = "server")]
pub use api::{Route, ROUTES};
#[cfg(feature = "server")]
pub use config::{Config, ConfigError, Resolved, Role};
#[cfg(feature = "server")]
pub use server::{bind, Listeners, ServeError};

#[cfg(feature = "client")]
pub use client::{fleet_status, with_guests, AgentStatus, Client, ClientError, Endpoint, Info};

#[cfg(feature = "tui")]
pub use top::{run as run_top, TopError, TopOptions};

/// Parses one request as the API does, for the fuzz target only: whether it was accepted.
#[cfg(all(feature = "server", feature = "test-hooks"))]
pub fn parse_request(method: &str, target: &str, body: &[u8]) -> bool {
    api::parse_request(method, target, body).is_ok()
}

/// The committed OpenAPI document (docs/agent-openapi.json), served at `/v1/openapi.json`.
#[cfg(feature = "server")]
pub const OPENAPI_JSON: &str = include_str!("../../../docs/agent-openapi.json");
