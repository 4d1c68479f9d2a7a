//! The `multiverse` library: the command line of Multiverse OS, shared by its two binaries.
//!
//! It holds the clap definitions of every subcommand ([`cli`]; those of the libvirt subcommands
//! in [`cli::virt`]), the helpers every command uses ([`error`], [`global`], [`secret_input`],
//! [`session`], [`unsealed`]) and every subcommand that does not talk to libvirt ([`cmd`]). The
//! work itself is done by the `mv-*` crates (see ARCHITECTURE.md).
//!
//! What it is not: the libvirt subcommands (`up`, `down`, `status`, `backup`, `restore`, `image`,
//! `migrate`, `console`, `rebuild`). They are the package `multiverse-virt`, which depends on this
//! library, `mv-libvirt` and `mv-migrate`; this package depends on neither, so Cargo, not the
//! linker, keeps libvirt out of the `multiverse` binary (`tests/it/libvirt_free.rs` checks it).
//!
//! Main entry points: [`cli::main`] (the whole program, given the libvirt dispatch),
//! [`cli::Cli`], [`error::CliError`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;
pub mod error;
pub mod global;
pub mod secret_input;
pub mod session;
pub mod unsealed;
