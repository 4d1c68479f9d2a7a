//! Build progress: the builder announces each phase to a [`Progress`]; [`Bar`] draws an indicatif
//! bar on stderr (hidden when stderr is not a terminal), [`Silent`] draws nothing.
//!
//! What this is not: logging. Errors travel as [`crate::ImageError`], never through here.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// The phases of a build, in order.
pub const PHASES: &[&str] = &[
    "installing packages into a folder",
    "configuring the root folder",
    "writing the ext4 root filesystem",
    "assembling the disk and boot loader",
    "converting to qcow2",
    "checking and installing the image",
];

/// Receives the build's phases.
pub trait Progress {
    /// Phase `index` (into [`PHASES`]) starts.
    fn phase(&self, index: usize);
    /// The build finished (successfully or not).
    fn finish(&self);
}

/// No output.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _index: usize) {}
    fn finish(&self) {}
}

/// An indicatif bar over [`PHASES`] with the elapsed time ticking.
#[derive(Debug)]
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar on stderr; `hidden` (e.g. `--quiet`, `--json`) draws nothing.
    pub fn new(hidden: bool) -> Self {
        let pb = ProgressBar::with_draw_target(
            Some(PHASES.len() as u64),
            if hidden {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:20}] {pos}/{len} {msg}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.enable_steady_tick(Duration::from_millis(200));
        Bar(pb)
    }
}

impl Progress for Bar {
    fn phase(&self, index: usize) {
        self.0.set_position(index as u64);
        self.0
            .set_message(PHASES.get(index).copied().unwrap_or("").to_string());
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
