//! Build progress: the builder announces each phase of a build to its caller as a
//! [`BuildProgress`]; this crate never draws or prints it (the CLI draws a bar).
//!
//! What this is not: logging. Errors travel as [`crate::ImageError`], never through here.

/// The phases of a build, in order: a [`BuildProgress::Phase`] names one by its index.
pub const PHASES: &[&str] = &[
    "installing packages into a folder",
    "configuring the root folder",
    "writing the ext4 root filesystem",
    "assembling the disk and boot loader",
    "converting to qcow2",
    "checking and installing the image",
];

/// How far a build is, reported to the `progress` function given to [`crate::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildProgress {
    /// Phase `index` (into [`PHASES`]) starts; each is sent once, in order.
    Phase(usize),
    /// The image and its manifest are installed. Not sent after an error.
    Finish,
}

impl BuildProgress {
    /// The phase's name (from [`PHASES`]); `""` for [`BuildProgress::Finish`].
    pub fn name(self) -> &'static str {
        match self {
            BuildProgress::Phase(i) => PHASES.get(i).copied().unwrap_or(""),
            BuildProgress::Finish => "",
        }
    }
}
