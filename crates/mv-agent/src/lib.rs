//! `mv-agent`: the Multiverse agent library: one small daemon per machine, whatever its role
//! (host, controller, router, service), with stats, scheduled maintenance and one HTTP/JSON API.
//!
//! The shape follows Firecracker: HTTP handlers in [`api`] only *parse* a request into a typed
//! [`action::Action`]; [`action::execute`] is the one place that runs actions against the
//! [`agent::Agent`] state. One module per resource:
//!
//! - [`config`]: `agent.toml` ([`config::Config`]); the smallest is `role = "service"` plus
//!   `[api] socket = "..."`.
//! - [`stats`]: the collectors (CPU, memory, load, disks, network; role extras: libvirt domains,
//!   router state, service states), each run with its own timeout so a broken one only marks its
//!   own section stale ([`stats::Stats`]).
//! - [`history`]: the bounded ring buffer of compact [`history::Sample`]s.
//! - [`tasks`]: named maintenance tasks (fstrim, pruning, log rotation, update checks) on an
//!   interval and on demand, with their last results.
//! - [`metrics`]: the Prometheus text exposition, written into one reused buffer.
//! - [`server`]: the transports (unix socket, TCP with a bearer token, virtio-serial) with bounded
//!   memory per connection; [`proxy`]: the host side of the virtio-serial channels.
//! - [`client`]: a small blocking client for the CLI (`multiverse status`, `multiverse top`).
//! - [`top`]: the `multiverse top` terminal dashboard (ratatui).
//!
//! What this crate is not: a general metrics system (no push, no storage beyond the ring buffer),
//! nor a remote shell: the API runs only the tasks named in the config.
#![forbid(unsafe_code)]

pub mod action;
pub mod agent;
pub mod api;
pub mod client;
pub mod config;
pub mod history;
pub mod metrics;
pub mod proxy;
mod request_id;
pub mod selfinfo;
pub mod server;
pub mod stats;
pub mod tasks;
pub mod top;
mod util;

pub use agent::Agent;
pub use config::{Config, Role};

/// The committed OpenAPI document (docs/agent-openapi.json), served at `/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/agent-openapi.json");
