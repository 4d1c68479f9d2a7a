//! `show` through the library alone, without the `multiverse` binary's start-up (which loads
//! libvirt and ~55 shared libraries). bench/pass.sh times it beside `multiverse pass show` to
//! separate the store's own cost from the binary's.
//!
//!     cargo run --release -p mv-pass --example show -- KEYDIR STOREDIR NAME
//!
//! Only clear (`--unsealed`) secret keys are used: this is a measuring tool, not a CLI.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [keys, store, name] = args.as_slice() else {
        return Err("usage: show KEYDIR STOREDIR NAME".into());
    };
    let ring = mv_pass::KeyDir::new(keys).load(None)?;
    let store = mv_pass::Store::new(store);
    let plain = store.read(&mv_pass::EntryName::parse(name)?, &ring)?;
    std::io::stdout().write_all(plain.expose())?;
    Ok(())
}
