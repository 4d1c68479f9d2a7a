//! The HTTP surface as data: the route table ([`ROUTES`], which the committed OpenAPI document is
//! checked against) and [`parse_request`], which turns a method, a request target and a body into
//! a typed [`Action`] or an [`ApiError`]. Nothing here touches the agent's state.
//!
//! `parse_request` sees bytes from any client, so it is total: every input gives an action or an
//! error, never a panic (a fuzz target and a property test feed it noise). Its cost is linear in
//! the target, which is at most [`MAX_TARGET_BYTES`] (414 past it): a machine route forwards
//! exactly one level, and a nested one is refused before the inner route is parsed.

use crate::action::{Action, ProxyMethod};
use crate::config::Role;
use mv_core::MachineName;
use std::time::Duration;

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path pattern, `{name}` for parameters (OpenAPI style).
    pub path: &'static str,
}

const fn r(method: &'static str, path: &'static str) -> Route {
    Route { method, path }
}

/// Every route the agent serves (role extras are listed on every role; a role that does not have
/// them answers 404).
pub const ROUTES: &[Route] = &[
    r("GET", "/v1/health"),
    r("GET", "/v1/info"),
    r("GET", "/v1/stats"),
    r("GET", "/v1/stats/history"),
    r("GET", "/v1/tasks"),
    r("POST", "/v1/tasks/{name}/run"),
    r("GET", "/v1/events"),
    r("GET", "/v1/openapi.json"),
    r("GET", "/metrics"),
    r("GET", "/v1/host/domains"),
    r("GET", "/v1/router/status"),
    r("GET", "/v1/controller/services"),
    r("GET", "/v1/service/services"),
    r("GET", "/v1/machines"),
    r("GET", "/v1/machines/{fqdn}/{path}"),
    r("POST", "/v1/machines/{fqdn}/{path}"),
];

/// A request that maps to no action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// No such route (404).
    #[error("no route {0}")]
    NotFound(String),
    /// The route exists with other methods (405).
    #[error("method {method} not allowed on {path} (allowed: {allowed})")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
        /// The methods the path takes.
        allowed: &'static str,
    },
    /// A malformed parameter (400).
    #[error("{0}")]
    BadRequest(String),
    /// A request target longer than [`MAX_TARGET_BYTES`] (414).
    #[error("request target of {0} bytes is over the limit of {MAX_TARGET_BYTES}")]
    TargetTooLong(usize),
}

/// The longest request target accepted. The longest real one is a machine route with a
/// 253-byte name and a history window, well under 1 KiB.
pub(crate) const MAX_TARGET_BYTES: usize = 2048;

impl ApiError {
    /// The HTTP status code.
    pub(crate) fn status(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::BadRequest(_) => 400,
            ApiError::TargetTooLong(_) => 414,
        }
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Every parameter must be allowed and appear once: with `?dry_run=0&dry_run=1`, the agent reading
/// the first and a proxy, a log or a person reading the last would disagree about what ran.
fn check_query(query: &str, allowed: &[&str]) -> Result<(), ApiError> {
    // Only allowed keys get in, each once: at most `allowed.len()` entries.
    let mut seen: Vec<&str> = Vec::with_capacity(allowed.len());
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let k = kv.split_once('=').map_or(kv, |(k, _)| k);
        if seen.contains(&k) {
            return Err(ApiError::BadRequest(format!(
                "query parameter {:?} is given more than once",
                truncate(k)
            )));
        }
        if !allowed.contains(&k) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {k:?} (allowed: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        seen.push(k);
    }
    Ok(())
}

fn flag(query: &str, key: &str) -> Result<bool, ApiError> {
    match query_param(query, key) {
        None | Some("false") | Some("0") => Ok(false),
        Some("") | Some("true") | Some("1") => Ok(true),
        Some(v) => Err(ApiError::BadRequest(format!(
            "{key}={v:?}: expected true or false"
        ))),
    }
}

/// Turns a request into an action. `target` is the request target (`/v1/stats?x=y`); `body` is
/// already size-limited by the transport (no route takes a body today: one is refused).
pub(crate) fn parse_request(method: &str, target: &str, body: &[u8]) -> Result<Action, ApiError> {
    if target.len() > MAX_TARGET_BYTES {
        return Err(ApiError::TargetTooLong(target.len()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with('/') || path.contains("//") || path.contains('%') {
        return Err(ApiError::NotFound(truncate(path)));
    }
    if !body.is_empty() {
        return Err(ApiError::BadRequest(
            "no route takes a request body".to_string(),
        ));
    }
    let segs: Vec<&str> = path[1..].split('/').collect();
    let get = |a: Action, allowed_q: &[&str]| -> Result<Action, ApiError> {
        if method != "GET" && method != "HEAD" {
            return Err(ApiError::MethodNotAllowed {
                method: truncate(method),
                path: truncate(path),
                allowed: "GET",
            });
        }
        check_query(query, allowed_q)?;
        Ok(a)
    };
    match segs.as_slice() {
        ["metrics"] => get(Action::Metrics, &[]),
        ["v1", "health"] => get(Action::Health, &[]),
        ["v1", "info"] => get(Action::Info, &[]),
        ["v1", "stats"] => get(Action::Stats, &[]),
        ["v1", "stats", "history"] => {
            let window = match query_param(query, "window") {
                None => None,
                Some(w) => Some(
                    mv_core::duration::parse(w)
                        .ok()
                        .filter(|d| *d > Duration::ZERO)
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "window={:?}: expected a duration like 90s, 5m, 1h",
                                truncate(w)
                            ))
                        })?,
                ),
            };
            get(Action::History { window }, &["window"])
        }
        ["v1", "tasks"] => get(Action::Tasks, &[]),
        ["v1", "tasks", name, "run"] => {
            if method != "POST" {
                return Err(ApiError::MethodNotAllowed {
                    method: truncate(method),
                    path: truncate(path),
                    allowed: "POST",
                });
            }
            check_query(query, &["dry_run"])?;
            if name.is_empty() || name.len() > 64 {
                return Err(ApiError::BadRequest("bad task name".into()));
            }
            Ok(Action::RunTask {
                name: (*name).to_string(),
                dry_run: flag(query, "dry_run")?,
            })
        }
        ["v1", "events"] => get(Action::Events, &[]),
        ["v1", "openapi.json"] => get(Action::OpenApi, &[]),
        ["v1", "host", "domains"] => get(Action::HostDomains, &[]),
        ["v1", "router", "status"] => get(Action::RouterStatus, &[]),
        ["v1", "controller", "services"] => get(
            Action::Services {
                role: Role::Controller,
            },
            &[],
        ),
        ["v1", "service", "services"] => get(
            Action::Services {
                role: Role::Service,
            },
            &[],
        ),
        ["v1", "machines"] => get(Action::Machines, &[]),
        // Refused before the inner parse below: nothing is forwarded twice, and a nested path
        // (`machines/a.b/machines/a.b/...`) must not cost one recursion (and one copy of the
        // rest of the path) per level.
        ["v1", "machines", _, "machines" | "events", ..] => Err(ApiError::BadRequest(
            "events and machine routes are not forwarded to guests".into(),
        )),
        ["v1", "machines", fqdn, rest @ ..] if !rest.is_empty() => {
            let fqdn = MachineName::parse(fqdn)
                .map_err(|e| ApiError::BadRequest(format!("machine name: {e}")))?;
            let inner = if rest == ["metrics"] {
                "/metrics".to_string()
            } else {
                format!("/v1/{}", rest.join("/"))
            };
            let inner_target = if query.is_empty() {
                inner
            } else {
                format!("{inner}?{query}")
            };
            // The guest's route must exist and be proxyable: no streams, no nested proxying (the
            // check above already refused them; this one keeps the rule whatever the route).
            let a = parse_request(method, &inner_target, body)?;
            if matches!(
                a,
                Action::Events | Action::Machines | Action::Machine { .. }
            ) {
                return Err(ApiError::BadRequest(
                    "events and machine routes are not forwarded to guests".into(),
                ));
            }
            let method = if method == "POST" {
                ProxyMethod::Post
            } else {
                ProxyMethod::Get
            };
            Ok(Action::Machine {
                fqdn,
                method,
                target: inner_target,
            })
        }
        _ => Err(ApiError::NotFound(truncate(path))),
    }
}

/// Echoing attacker-controlled text back is fine, but not megabytes of it.
fn truncate(s: &str) -> String {
    if s.len() <= 128 {
        return s.to_string();
    }
    let mut end = 128;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn routes() {
        assert_eq!(parse_request("GET", "/v1/health", b""), Ok(Action::Health));
        assert_eq!(
            parse_request("GET", "/v1/stats/history?window=5m", b""),
            Ok(Action::History {
                window: Some(Duration::from_secs(300))
            })
        );
        assert_eq!(
            parse_request("POST", "/v1/tasks/trim/run?dry_run=true", b""),
            Ok(Action::RunTask {
                name: "trim".into(),
                dry_run: true
            })
        );
        assert_eq!(
            parse_request("GET", "/v1/tasks/trim/run", b"")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            parse_request("POST", "/v1/stats", b"")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            parse_request("GET", "/v2/stats", b"").unwrap_err().status(),
            404
        );
        assert_eq!(
            parse_request("GET", "/v1/stats?x=1", b"")
                .unwrap_err()
                .status(),
            400
        );
        for q in [
            "dry_run=0&dry_run=1",
            "dry_run=1&dry_run=1",
            "dry_run&dry_run=0",
        ] {
            assert_eq!(
                parse_request("POST", &format!("/v1/tasks/trim/run?{q}"), b"")
                    .unwrap_err()
                    .status(),
                400,
                "{q}"
            );
        }
        assert_eq!(
            parse_request("GET", "/v1/stats/history?window=1m&window=1h", b"")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse_request("GET", "/v1/stats/history?window=soon", b"")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse_request("GET", "/v1/stats", b"x")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn machine_routes() {
        let a = parse_request(
            "GET",
            "/v1/machines/star.router.multiverse/stats/history?window=1m",
            b"",
        )
        .unwrap();
        match a {
            Action::Machine {
                fqdn,
                method,
                target,
            } => {
                assert_eq!(fqdn.as_str(), "star.router.multiverse");
                assert_eq!(method, ProxyMethod::Get);
                assert_eq!(target, "/v1/stats/history?window=1m");
            }
            other => panic!("{other:?}"),
        }
        let a = parse_request("GET", "/v1/machines/a.multiverse/metrics", b"").unwrap();
        assert!(matches!(a, Action::Machine { ref target, .. } if target == "/metrics"));
        assert_eq!(
            parse_request("GET", "/v1/machines/a.multiverse/events", b"")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse_request("GET", "/v1/machines/a.multiverse/nope", b"")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            parse_request("GET", "/v1/machines/..%2f/stats", b"")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            parse_request("GET", "/v1/machines/Bad_Name!/stats", b"")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn nesting_and_long_targets_are_refused_up_front() {
        let nested = |levels: usize| {
            let mut p = "/v1/machines".to_string();
            for _ in 0..levels {
                p.push_str("/a.b/machines");
            }
            p + "/a.b/stats"
        };
        for levels in [1, 2, 50] {
            let e = parse_request("GET", &nested(levels), b"").unwrap_err();
            assert_eq!(e.status(), 400, "{levels}: {e}");
        }
        assert_eq!(
            parse_request("GET", &nested(1200), b"").unwrap_err(),
            ApiError::TargetTooLong(nested(1200).len())
        );
        let at_limit = format!("/v1/stats?{}", "a".repeat(MAX_TARGET_BYTES - 10));
        assert_eq!(at_limit.len(), MAX_TARGET_BYTES);
        assert_eq!(
            parse_request("GET", &at_limit, b"").unwrap_err().status(),
            400
        );
        assert_eq!(
            parse_request("GET", &format!("{at_limit}a"), b"")
                .unwrap_err()
                .status(),
            414
        );
    }

    #[test]
    fn every_route_in_the_table_parses() {
        for route in ROUTES {
            let path = route
                .path
                .replace("{name}", "trim")
                .replace("{fqdn}", "a.multiverse")
                .replace("{path}", "stats");
            let path = if route.method == "POST" && path.starts_with("/v1/machines/") {
                "/v1/machines/a.multiverse/tasks/trim/run".to_string()
            } else {
                path
            };
            assert!(parse_request(route.method, &path, b"").is_ok(), "{route:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_is_total(method in "[A-Z]{0,8}", target in "\\PC{0,200}", body in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse_request(&method, &target, &body);
        }

        #[test]
        fn parse_is_total_on_route_like_input(seg in proptest::collection::vec("[a-z0-9.%_-]{0,12}", 0..6), q in "[a-z_=&0-9]{0,20}") {
            let target = format!("/v1/{}?{}", seg.join("/"), q);
            let _ = parse_request("GET", &target, b"");
            let _ = parse_request("POST", &target, b"");
            let _ = parse_request("GET", &format!("/v1/machines/{}", seg.join("/")), b"");
        }
    }
}
