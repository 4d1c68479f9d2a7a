//! `multiverse init`: writes the default topology (docs/design.md) as multiverse.toml into --root and
//! renders the tree from it. Creates no identity (that is `multiverse identity init`).
//!
//! `--lab` writes the lab variant instead ([`mv_machines::LAB_TOML`]: all Debian, the
//! universe router on a virtio `uplink`, no passthrough), with `accel = "tcg"` when this host's
//! KVM cannot boot a stock guest (`mv_host::kvm`), and placeholder VPN provider settings
//! for the galaxy router so that every machine renders and provisions.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_machines::{lab_toml, Accel, Arch, Topology, Tree, DEFAULT_TOML};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Replace an existing multiverse.toml with the default
    #[arg(long)]
    pub force: bool,
    /// Host architecture of the default topology
    #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "aarch64"])]
    pub arch: String,
    /// Write the lab variant: every machine Debian, universe's NIC a virtio NIC on the `uplink`
    /// network, no GPU/USB passthrough, TCG where KVM cannot boot a guest
    #[arg(long)]
    pub lab: bool,
}

/// The galaxy router's VPN provider settings `--lab` writes: documentation addresses and a
/// placeholder key, so the galaxy renders and provisions; its tunnel goes nowhere.
const LAB_VPN_TOML: &str = "\
# Written by `multiverse init --lab`: placeholder VPN provider settings (a documentation address,
# no real provider). Replace them with your provider's to use the tunnel.
endpoint = \"192.0.2.1\"
port = 51820
address = \"10.64.0.2/32\"
dns = \"10.64.0.1\"
peer_public_key = \"bGFiIHBsYWNlaG9sZGVyIHBlZXIga2V5IDMyIGJ5dGU=\"
# This end's private key (0600, beside this file; `init --lab` made a new one).
private_key_file = \"wg0.key\"
";

/// Runs the command.
pub fn run(g: &Global, a: Args) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let config = tree.config_file();
    let arch: Arch = a.arch.parse().map_err(CliError::usage_msg)?;
    let text = if a.lab {
        let kvm = mv_host::kvm(&mv_host::Roots::default());
        let accel = if kvm.boots_stock_guests() {
            Accel::Kvm
        } else {
            g.say(format!(
                "KVM cannot boot a stock guest on this host ({}): the lab runs guests under TCG (accel = \"tcg\"), a guest answers about 25 s after its first start (provisioning) and about 9 s after later ones",
                serde_json::to_value(kvm).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ));
            Accel::Tcg
        };
        lab_toml(arch, accel)
    } else {
        match arch {
            Arch::X86_64 => DEFAULT_TOML.to_string(),
            Arch::Aarch64 => DEFAULT_TOML.replacen("arch = \"x86_64\"", "arch = \"aarch64\"", 1),
        }
    };
    let existing = std::fs::read_to_string(&config).ok();
    let same = existing.as_deref() == Some(text.as_str());
    if existing.is_some() && !same && !a.force {
        return Err(
            CliError::usage_msg(format!("{} already exists", config.display())).with_hint(
                "pass --force to replace it with the default (your edits would be lost)",
            ),
        );
    }
    let topology = Topology::parse(&text, &config).map_err(super::render::config_error)?;
    let rel = super::render::rel(tree.root(), &config);
    // Render first in memory (validated), then write the config, then the tree.
    let report = if g.dry_run {
        if !same {
            g.say(format!(
                "would {} {rel}",
                if existing.is_some() {
                    "replace"
                } else {
                    "create"
                }
            ));
        }
        super::render::render_into(&tree, &topology, true)?
    } else {
        // Everything renders (templates/ overrides included) before the first byte is written.
        super::render::render_into(&tree, &topology, true)?;
        let wrote = mv_core::fsutil::write_public(&config, text.as_bytes())
            .hint("check that --root is writable")?;
        if wrote {
            g.say(format!("wrote {rel}"));
        }
        super::render::render_into(&tree, &topology, false)?
    };
    if a.lab {
        lab_vpn(g, &tree, &topology)?;
    }
    if same && report.nothing_changed() {
        g.say(format!(
            "{} is already initialised; nothing changed",
            tree.root().display()
        ));
        return Ok(());
    }
    super::render::print_report(g, &tree, &report)
}

/// Writes placeholder VPN settings for every galaxy router of the lab that has none yet.
fn lab_vpn(g: &Global, tree: &Tree, topology: &Topology) -> Result<(), CliError> {
    for m in topology.vms() {
        if m.router.as_ref().and_then(|r| r.vpn).is_none() {
            continue;
        }
        let path = mv_provision::vpn_file(tree.root(), &m.name);
        if path.exists() {
            continue;
        }
        let rel = super::render::rel(tree.root(), &path);
        if g.dry_run {
            g.say(format!("would create {rel}"));
            continue;
        }
        let key = path.with_file_name("wg0.key");
        if mv_provision::new_wireguard_key_file(&key).hint("check that --root is writable")? {
            g.say(format!(
                "wrote {} (a new WireGuard private key)",
                super::render::rel(tree.root(), &key)
            ));
        }
        mv_core::fsutil::write_public(&path, LAB_VPN_TOML.as_bytes())
            .hint("check that --root is writable")?;
        g.say(format!("wrote {rel} (placeholder VPN provider settings)"));
    }
    Ok(())
}
