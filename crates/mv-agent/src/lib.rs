//! `mv-agent`: The Multiverse agent: stats, maintenance, one HTTP/JSON API on every role.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
