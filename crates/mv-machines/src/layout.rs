//! The on-disk layout of a Multiverse tree: [`Tree`], defined in `mv_core::layout` (so crates
//! below `mv-machines`, such as the identity, pass and guard crates, ask it too) and re-exported
//! here under its old path.

pub use mv_core::layout::{
    agent_socket, ssh_socket, Tree, AGENT_API_SOCKET, AGENT_CHANNEL, POOL_NAME,
};
