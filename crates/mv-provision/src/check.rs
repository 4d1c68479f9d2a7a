//! Checking generated configurations with the tools that will read them.
//!
//! Every router configuration is handed to its own tool before anyone boots it:
//! `nft -c -f` (inside a new network namespace, so nothing touches the host's rules),
//! `dnsmasq --test -C`, `tor --verify-config` (always with `DisableNetwork 1`), `sshd -t -f` and
//! `wg-quick strip`. Each check writes the file to a scratch folder and returns the tool's own
//! words when it refuses.
//!
//! What this is not: a linter of our own. If the tool accepts it, so do we.
