//! `multiverse init`: writes the default topology (DESIGN.md) as multiverse.toml into --root and
//! renders the tree from it. Creates no identity (that is `multiverse identity init`).

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_machines::config::{Arch, Topology, DEFAULT_TOML};
use mv_machines::Tree;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Replace an existing multiverse.toml with the default
    #[arg(long)]
    pub force: bool,
    /// Host architecture of the default topology
    #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "aarch64"])]
    pub arch: String,
}

/// Runs the command.
pub fn run(g: &Global, a: Args) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let config = tree.config_file();
    let arch: Arch = a.arch.parse().map_err(CliError::usage_msg)?;
    let text = match arch {
        Arch::X86_64 => DEFAULT_TOML.to_string(),
        Arch::Aarch64 => DEFAULT_TOML.replacen("arch = \"x86_64\"", "arch = \"aarch64\"", 1),
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
    if same && report.nothing_changed() {
        g.say(format!(
            "{} is already initialised; nothing changed",
            tree.root().display()
        ));
        return Ok(());
    }
    super::render::print_report(g, &tree, &report)
}
