//! `guard-emit`: sends a USB uevent into another network namespace, for the kernel to broadcast
//! there as its own (the real netlink path of a watcher started under `unshare -n`). A test and
//! benchmark tool, not part of the product (it was `multiverse guard emit`): built only with
//! the `test-hooks` feature.
//!
//! ```text
//! guard-emit --netns /proc/PID/ns/net --action remove --devpath /devices/... --product 1050:0407
//! ```
//!
//! Prints the time just before the send, in nanoseconds since the epoch (the benchmark measures
//! from there to the first action). Exit 2 for bad arguments or the caller's own namespace
//! (where udevd would act on the event), 1 when sending fails (root only).

use mv_core::Classify;
use std::path::PathBuf;
use std::process::ExitCode;

fn usage(msg: &str) -> ExitCode {
    eprintln!("guard-emit: error: {msg}");
    eprintln!(
        "usage: guard-emit --netns /proc/PID/ns/net --action add|remove --devpath PATH --product VID:PID"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut netns, mut action, mut devpath, mut product) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--netns" => &mut netns,
            "--action" => &mut action,
            "--devpath" => &mut devpath,
            "--product" => &mut product,
            other => return usage(&format!("unknown argument {other}")),
        };
        let Some(v) = args.next() else {
            return usage(&format!("{flag} needs a value"));
        };
        *slot = Some(v);
    }
    let (Some(netns), Some(action), Some(devpath), Some(product)) =
        (netns, action, devpath, product)
    else {
        return usage("--netns, --action, --devpath and --product are required");
    };
    let Some((vid, pid)) = product.split_once(':').and_then(|(v, p)| {
        Some((
            u16::from_str_radix(v, 16).ok()?,
            u16::from_str_radix(p, 16).ok()?,
        ))
    }) else {
        return usage("--product is VID:PID in hex");
    };
    let mut ev = mv_guard::Uevent::usb(&action, &devpath, vid, pid, 0);
    // The kernel numbers the broadcast itself.
    ev.vars.remove("SEQNUM");
    match mv_guard::watch::send_in_netns(&PathBuf::from(netns), &ev.encode()) {
        Ok(sent) => {
            let t = sent
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guard-emit: error: {e}");
            if let Some(src) = std::error::Error::source(&e) {
                eprintln!("  caused by: {src}");
            }
            match e.class() {
                mv_core::ErrorClass::Usage => {
                    eprintln!("hint: start the watcher under `unshare -n` and pass --netns /proc/PID/ns/net");
                    ExitCode::from(2)
                }
                mv_core::ErrorClass::Failure => {
                    eprintln!("hint: sending uevents into a namespace needs root");
                    ExitCode::from(1)
                }
            }
        }
    }
}
