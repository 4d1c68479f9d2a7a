//! [`Action`]: everything a client can ask of the agent, as a typed value, and [`execute`], the
//! one place that carries actions out against the [`Agent`].
//!
//! Transports turn requests into actions with [`crate::api::parse_request`] and turn the
//! [`Reply`] back into HTTP; they hold no logic of their own.

use crate::agent::Agent;
use crate::config::Role;
use hyper::body::Bytes;
use mv_core::MachineName;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How a request to a guest is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyMethod {
    /// GET.
    Get,
    /// POST.
    Post,
}

/// One thing a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `GET /v1/health`.
    Health,
    /// `GET /v1/info`.
    Info,
    /// `GET /v1/stats`.
    Stats,
    /// `GET /v1/stats/history?window=`.
    History {
        /// How far back (everything held when absent).
        window: Option<Duration>,
    },
    /// `GET /v1/tasks`.
    Tasks,
    /// `POST /v1/tasks/{name}/run?dry_run=`.
    RunTask {
        /// Task name.
        name: String,
        /// Plan only.
        dry_run: bool,
    },
    /// `GET /v1/events` (server-sent events).
    Events,
    /// `GET /metrics`.
    Metrics,
    /// `GET /v1/openapi.json`.
    OpenApi,
    /// `GET /v1/host/domains` (host role).
    HostDomains,
    /// `GET /v1/router/status` (router role).
    RouterStatus,
    /// `GET /v1/{controller,service}/services`.
    Services {
        /// The role in the path (each role serves only its own).
        role: Role,
    },
    /// `GET /v1/machines` (host role): the guests reachable over virtio-serial.
    Machines,
    /// `/v1/machines/{fqdn}/...` (host role): forwarded to that guest's agent.
    Machine {
        /// The guest.
        fqdn: MachineName,
        /// GET or POST.
        method: ProxyMethod,
        /// The guest-side request target (`/v1/stats`).
        target: String,
    },
}

/// What an action produced; the transport writes it out.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A JSON document with a status code.
    Json(u16, Bytes),
    /// Another content type (metrics, proxied bodies).
    Raw(u16, &'static str, Bytes),
    /// A server-sent event stream.
    Events(tokio::sync::broadcast::Receiver<Bytes>),
}

impl Reply {
    /// A JSON reply from any serialisable value.
    pub(crate) fn json(status: u16, v: &impl Serialize) -> Reply {
        match serde_json::to_vec(v) {
            Ok(b) => Reply::Json(status, Bytes::from(b)),
            Err(e) => Reply::error(500, &format!("cannot encode the reply: {e}")),
        }
    }

    /// `{"error": "..."}` with a status code.
    pub(crate) fn error(status: u16, msg: &str) -> Reply {
        Reply::json_value(status, serde_json::json!({ "error": msg }))
    }

    fn json_value(status: u16, v: serde_json::Value) -> Reply {
        Reply::Json(status, Bytes::from(v.to_string()))
    }
}

fn role_only(agent: &Agent, role: Role, what: &str) -> Option<Reply> {
    (agent.cfg.config.role != role).then(|| {
        Reply::error(
            404,
            &format!(
                "{what} is served by {} agents; this is a {} agent",
                role.as_str(),
                agent.cfg.config.role.as_str()
            ),
        )
    })
}

/// Carries out one action.
pub(crate) async fn execute(agent: &Arc<Agent>, action: Action) -> Reply {
    match action {
        Action::Health => {
            let s = agent.stats();
            let stale: Vec<&str> = s
                .freshness()
                .into_iter()
                .filter(|(_, st, _)| *st)
                .map(|(n, _, _)| n)
                .collect();
            Reply::json(
                200,
                &serde_json::json!({
                    "status": if s.samples == 0 { "starting" } else if stale.is_empty() { "ok" } else { "degraded" },
                    "stale": stale,
                    "samples": s.samples,
                    "uptime_ms": crate::util::now_ms().saturating_sub(agent.started_ms),
                }),
            )
        }
        Action::Info => {
            let (held, cap) = agent.history_len();
            let c = &agent.cfg.config;
            let me = crate::selfinfo::read(std::path::Path::new("/"));
            Reply::json(
                200,
                &serde_json::json!({
                    "api": "v1",
                    "name": agent.name,
                    "hostname": me.hostname,
                    "fqdn": me.fqdn,
                    "boot_uptime_s": me.boot_uptime_s,
                    "ssh_host_keys": me.ssh_host_keys,
                    "seed_id": me.seed_id,
                    "role": c.role.as_str(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "started_ms": agent.started_ms,
                    "interval_ms": agent.cfg.interval.as_millis() as u64,
                    "history": { "samples": held, "capacity": cap },
                    "collectors": crate::stats::CollectorId::for_role(c.role).iter().map(|i| i.name()).collect::<Vec<_>>(),
                    "tasks": c.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                    "transports": {
                        "unix": (!c.api.socket.as_os_str().is_empty()).then(|| c.api.socket.display().to_string()),
                        "tcp": c.api.tcp.map(|a| a.to_string()),
                        "virtio": c.api.virtio_port.as_ref().map(|p| p.display().to_string()),
                    },
                }),
            )
        }
        Action::Stats => Reply::json(200, &*agent.stats()),
        Action::History { window } => {
            let since = match window {
                Some(w) => crate::util::now_ms().saturating_sub(w.as_millis() as u64),
                None => 0,
            };
            let samples = agent.history_since(since);
            Reply::json(
                200,
                &serde_json::json!({ "interval_ms": agent.cfg.interval.as_millis() as u64, "samples": samples }),
            )
        }
        Action::Tasks => Reply::json(200, &agent.tasks.list()),
        Action::RunTask { name, dry_run } => {
            // Run it on its own task: a client that hangs up mid-run must not cancel the run
            // (which would leave it marked running forever); it finishes and is recorded.
            let me = agent.clone();
            let run = tokio::spawn(async move { me.tasks.run(&name, dry_run, "api").await });
            match run.await {
                Err(e) => Reply::error(500, &format!("task runner failed: {e}")),
                Ok(r) => task_reply(agent, r),
            }
        }
        Action::Events => Reply::Events(agent.subscribe()),
        Action::Metrics => Reply::Raw(200, crate::metrics::CONTENT_TYPE, agent.metrics()),
        Action::OpenApi => Reply::Raw(
            200,
            "application/json",
            Bytes::from_static(crate::OPENAPI_JSON.as_bytes()),
        ),
        Action::HostDomains => {
            if let Some(r) = role_only(agent, Role::Host, "/v1/host/domains") {
                return r;
            }
            let s = agent.stats();
            Reply::json(200, &s.host)
        }
        Action::RouterStatus => {
            if let Some(r) = role_only(agent, Role::Router, "/v1/router/status") {
                return r;
            }
            let s = agent.stats();
            Reply::json(200, &s.router)
        }
        Action::Services { role } => {
            let path = format!("/v1/{}/services", role.as_str());
            if let Some(r) = role_only(agent, role, &path) {
                return r;
            }
            let s = agent.stats();
            Reply::json(200, &s.services)
        }
        Action::Machines => {
            if let Some(r) = role_only(agent, Role::Host, "/v1/machines") {
                return r;
            }
            Reply::json(200, &agent.channels.list())
        }
        Action::Machine {
            fqdn,
            method,
            target,
        } => {
            if let Some(r) = role_only(agent, Role::Host, "/v1/machines/{fqdn}") {
                return r;
            }
            match agent.channels.forward(&fqdn, method, &target).await {
                Ok((status, ctype, body)) => Reply::Raw(status, ctype, body),
                Err(e) => Reply::error(e.status(), &crate::stats::error_chain(&e)),
            }
        }
    }
}

fn task_reply(agent: &Agent, r: Result<crate::tasks::TaskResult, crate::tasks::RunError>) -> Reply {
    match r {
        Ok(r) => {
            agent.emit("task", &r);
            Reply::json(if r.ok { 200 } else { 500 }, &r)
        }
        Err(e @ crate::tasks::RunError::Unknown(_)) => Reply::error(404, &e.to_string()),
        Err(e @ crate::tasks::RunError::AlreadyRunning(_)) => Reply::error(409, &e.to_string()),
    }
}
