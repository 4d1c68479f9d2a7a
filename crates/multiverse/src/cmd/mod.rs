//! One module per subcommand family. Each parses its own arguments (clap derive) and calls one
//! library crate; none holds logic of its own beyond formatting output.
//!
//! The libvirt subcommands are not here: their arguments are [`crate::cli::virt`], their code is
//! the `multiverse-virt` package, so that nothing in this library links libvirt.

pub mod agent;
pub mod guard;
pub mod host;
pub mod identity;
pub mod image_build;
pub mod init;
pub mod install;
pub mod install_tui;
pub mod machine;
pub mod meta;
pub mod pass;
pub mod provision;
pub mod render;
pub mod rotate;
pub mod ssh;
