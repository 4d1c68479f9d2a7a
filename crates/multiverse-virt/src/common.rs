//! What every libvirt subcommand needs: `multiverse.toml` loaded with a hint, the libvirt URI
//! chosen and connected, and the machines named on the command line selected.
//!
//! The connection URI is `--connect`, else `libvirt_uri` of `multiverse.toml`, else
//! `qemu:///system`.

use multiverse::cli::virt::ConnectArg;
use multiverse::error::{CliError, Hinted};
use mv_libvirt::Connection;
use mv_machines::{Topology, Tree};

pub(crate) fn topology(tree: &Tree) -> Result<Topology, CliError> {
    let path = tree.config_file();
    Topology::load(&path).usage().hint(&format!(
        "fix {} (or create a tree with `multiverse init --root {}`)",
        path.display(),
        tree.root().display()
    ))
}

/// The topology if `multiverse.toml` exists; an invalid one is still an error.
pub(crate) fn topology_opt(tree: &Tree) -> Result<Option<Topology>, CliError> {
    if tree.config_file().exists() {
        topology(tree).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn uri(arg: &ConnectArg, topo: Option<&Topology>) -> String {
    arg.connect
        .clone()
        .or_else(|| topo.and_then(|t| t.libvirt_uri.clone()))
        .unwrap_or_else(|| mv_libvirt::DEFAULT_URI.to_string())
}

pub(crate) fn connect(uri: &str) -> Result<Connection, CliError> {
    Connection::open(uri).hint(
        "is libvirtd running (scripts/start-services.sh)? Pick another URI with --connect or libvirt_uri in multiverse.toml",
    )
}

/// The machines to act on, in start order; unknown FQDNs are usage errors.
pub(crate) fn select<'a>(
    topo: &'a Topology,
    names: &[String],
) -> Result<Vec<&'a mv_machines::Machine>, CliError> {
    let order = topo.start_order();
    for n in names {
        if !order.iter().any(|m| m.name.as_str() == n) {
            return Err(
                CliError::usage_msg(format!("no virtual machine {n} in multiverse.toml"))
                    .with_hint("`multiverse machine list` shows the machines"),
            );
        }
    }
    Ok(order
        .into_iter()
        .filter(|m| names.is_empty() || names.iter().any(|n| n == m.name.as_str()))
        .collect())
}
