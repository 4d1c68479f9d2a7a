//! Controller and service roles: the state of the configured services, asked of the init system
//! (`rc-service NAME status` on Alpine, `systemctl is-active NAME` on Debian).
//!
//! A service whose query cannot even run (no init system) is reported as `unknown`; that is data,
//! not a collector failure.

#![cfg_attr(not(feature = "server"), allow(unused_imports))]

#[cfg(feature = "server")]
use crate::config::{ServiceManager, ServicesConfig};
use serde::{Deserialize, Serialize};
use std::process::{Command, Stdio};

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Service name.
    pub name: String,
    /// `running`, `stopped` or `unknown`.
    pub state: String,
}

/// The command line that asks about one service (also what the tests check).
#[cfg(feature = "server")]
pub fn query_command(manager: ServiceManager, name: &str) -> (&'static str, Vec<String>) {
    match manager {
        ServiceManager::Openrc => ("rc-service", vec![name.to_string(), "status".into()]),
        ServiceManager::Systemd => (
            "systemctl",
            vec!["is-active".into(), "--quiet".into(), name.to_string()],
        ),
    }
}

/// Queries every configured service (blocking; run with a timeout).
#[cfg(feature = "server")]
pub fn collect(cfg: &ServicesConfig) -> Vec<ServiceState> {
    cfg.names
        .iter()
        .map(|name| {
            let (prog, args) = query_command(cfg.manager, name);
            let state = match Command::new(prog)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
            {
                Ok(s) if s.success() => "running",
                Ok(_) => "stopped",
                Err(_) => "unknown",
            };
            ServiceState {
                name: name.clone(),
                state: state.into(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(
            query_command(ServiceManager::Openrc, "sshd"),
            ("rc-service", vec!["sshd".to_string(), "status".to_string()])
        );
        let (p, a) = query_command(ServiceManager::Systemd, "ssh");
        assert_eq!(p, "systemctl");
        assert_eq!(a, vec!["is-active", "--quiet", "ssh"]);
    }
}
