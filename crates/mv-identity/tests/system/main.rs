//! The integration tests of `mv-identity` that run real tools and daemons, one test binary with a module a
//! topic; built and run only with `--features system-tests` (scripts/test.sh).
//! Plain `cargo test` runs the hermetic ones in `tests/it`.
#![allow(clippy::unwrap_used)]

mod gpg;
