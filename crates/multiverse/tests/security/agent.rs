//! Security tests: agent (see main.rs and docs/security.md).

#[allow(unused_imports)]
use super::common;
