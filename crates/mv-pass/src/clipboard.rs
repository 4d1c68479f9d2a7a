//! The clipboard of `--clip`: copy a secret, and put back what was there before once the time is
//! up, as pass 1.7 does — but only if the clipboard still holds the secret.
//!
//! The programs are pass's (Wayland's `wl-copy`/`wl-paste` first, then `xclip`, then `xsel`);
//! the secret reaches them on stdin, never argv. The waiting is done by a detached process (the
//! caller's command, in practice `multiverse pass __clip-restore`), which gets the secret and
//! the previous contents on a pipe in one frame ([`Clipboard::copy_then_restore`] writes it,
//! [`restore_later`] reads it). A later copy on the same display supersedes a waiting job through
//! a per-display unix socket: nothing is killed by name.
//!
//! Main types: [`Session`] (the display variables), [`Selection`], [`Clipboard`],
//! [`ClipboardError`]. What this is not: it reads none of pass's variables
//! (`PASSWORD_STORE_X_SELECTION`, `PASSWORD_STORE_CLIP_TIME`); the caller maps them.

use mv_core::secret::SecretBytes;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Errors of the clipboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipboardError {
    /// No Wayland or X display with one of the clipboard programs.
    #[error("no clipboard here (no Wayland or X display with wl-copy, xclip or xsel)")]
    Unavailable,
    /// The copy program failed or could not be run.
    #[error(transparent)]
    Copy(std::io::Error),
    /// The restoring job could not be started or fed.
    #[error("cannot start the job that clears the clipboard: {0}")]
    Spawn(#[source] std::io::Error),
    /// The restoring job's input is not a frame of [`Clipboard::copy_then_restore`].
    #[error("malformed input on stdin")]
    Malformed,
    /// Reading the restoring job's input failed.
    #[error("cannot read the clipboard job's input: {0}")]
    Read(#[source] std::io::Error),
}

impl mv_core::Classify for ClipboardError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            ClipboardError::Unavailable | ClipboardError::Malformed => mv_core::ErrorClass::Usage,
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

/// The X selection (pass's `PASSWORD_STORE_X_SELECTION`); on Wayland only `Primary` changes
/// anything (wl-copy `--primary`), as in pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    /// `clipboard` (pass's default).
    #[default]
    Clipboard,
    /// `primary`.
    Primary,
    /// `secondary`.
    Secondary,
}

impl Selection {
    /// `clipboard`, `primary` or `secondary`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Selection> {
        match s {
            "clipboard" => Some(Selection::Clipboard),
            "primary" => Some(Selection::Primary),
            "secondary" => Some(Selection::Secondary),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Selection::Clipboard => "clipboard",
            Selection::Primary => "primary",
            Selection::Secondary => "secondary",
        }
    }
}

/// The graphical session: its display names and this user's runtime folder.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// `WAYLAND_DISPLAY` (empty: none).
    pub wayland_display: String,
    /// `DISPLAY` (empty: none).
    pub x_display: String,
    /// `XDG_RUNTIME_DIR` (where the clearing job listens; the temp folder otherwise).
    pub runtime_dir: Option<PathBuf>,
}

impl Session {
    /// This process's session, from `WAYLAND_DISPLAY`, `DISPLAY` and `XDG_RUNTIME_DIR`.
    pub fn from_env() -> Session {
        Session {
            wayland_display: std::env::var("WAYLAND_DISPLAY").unwrap_or_default(),
            x_display: std::env::var("DISPLAY").unwrap_or_default(),
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// The clipboard programs of this session, chosen like pass 1.7: Wayland first, then X.
#[derive(Debug, Clone)]
pub struct Clipboard {
    copy: Vec<String>,
    paste: Vec<String>,
    /// Where the clearing job of this display listens (one job per display).
    socket: PathBuf,
}

/// Whether `tool` is an executable file on `PATH`.
pub(crate) fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

impl Clipboard {
    /// The clipboard of `session` for `selection`.
    pub fn detect(session: &Session, selection: Selection) -> Result<Clipboard, ClipboardError> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let sel = selection.name();
        let (copy, paste, display) = if !session.wayland_display.is_empty() && which("wl-copy") {
            let (mut c, mut p) = (v(&["wl-copy"]), v(&["wl-paste", "-n"]));
            if selection == Selection::Primary {
                c.push("--primary".into());
                p.push("--primary".into());
            }
            (c, p, &session.wayland_display)
        } else if !session.x_display.is_empty() && which("xclip") {
            (
                v(&["xclip", "-selection", sel]),
                v(&["xclip", "-o", "-selection", sel]),
                &session.x_display,
            )
        } else if !session.x_display.is_empty() && which("xsel") {
            let flag = format!("--{sel}");
            (
                v(&["xsel", &flag, "--input"]),
                v(&["xsel", &flag, "--output"]),
                &session.x_display,
            )
        } else {
            return Err(ClipboardError::Unavailable);
        };
        let display: String = display
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let socket = match &session.runtime_dir {
            Some(d) => d.join(format!("multiverse-clip-{display}")),
            None => {
                let uid = std::fs::metadata("/proc/self")
                    .map(|m| std::os::unix::fs::MetadataExt::uid(&m).to_string())
                    .unwrap_or_else(|_| "unknown".into());
                std::env::temp_dir().join(format!("multiverse-clip-{uid}-{display}"))
            }
        };
        Ok(Clipboard {
            copy,
            paste,
            socket,
        })
    }

    /// Puts `data` on the clipboard (through stdin, never argv). xclip and wl-copy leave a
    /// process behind that serves the selection: it gets no stdout/stderr of ours, so whoever
    /// reads our output is not kept waiting until the clipboard changes hands.
    pub fn copy(&self, data: &[u8]) -> Result<(), ClipboardError> {
        let run = || -> std::io::Result<()> {
            let mut child = Command::new(&self.copy[0])
                .args(&self.copy[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(data)?;
            }
            let status = child.wait()?;
            if !status.success() {
                return Err(std::io::Error::other(format!(
                    "{} failed: {status}",
                    self.copy.join(" ")
                )));
            }
            Ok(())
        };
        run().map_err(ClipboardError::Copy)
    }

    /// The clipboard's contents; `None` when it holds nothing (or cannot be read).
    pub fn paste(&self) -> Option<SecretBytes> {
        let out = Command::new(&self.paste[0])
            .args(&self.paste[1..])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let data = SecretBytes::new(out.stdout);
        out.status.success().then_some(data)
    }

    /// Tells an earlier clearing job on this display to put its "before" back now and waits
    /// (at most 5 s) until it has, like pass's `pkill -f "^password store sleep on display"`:
    /// otherwise our "before" would be its secret, which we would restore later.
    fn supersede(&self) {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"now").is_ok() {
            let mut done = [0u8; 4];
            let _ = s.read(&mut done);
        }
    }

    /// Copies `secret` and starts `restorer` (detached: its own process group, no stdout or
    /// stderr, not waited for) with the frame on its stdin: secret length (u64 LE), secret, 1
    /// and the previous contents, or 0. `restorer` must run [`restore_later`] on that input.
    pub fn copy_then_restore(
        &self,
        secret: &[u8],
        mut restorer: Command,
    ) -> Result<(), ClipboardError> {
        self.supersede();
        let before = self.paste();
        self.copy(secret)?;
        let mut frame = SecretBytes::new(Vec::with_capacity(secret.len() + 64));
        let buf = frame.expose_mut();
        buf.extend_from_slice(&(secret.len() as u64).to_le_bytes());
        buf.extend_from_slice(secret);
        match &before {
            Some(b) => {
                buf.push(1);
                buf.extend_from_slice(b.expose());
            }
            None => buf.push(0),
        }
        let mut child = restorer
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(ClipboardError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(frame.expose())
                .map_err(ClipboardError::Spawn)?;
        }
        // Not waited for: it outlives us on purpose, and init reaps it.
        drop(child);
        Ok(())
    }
}

/// The clearing job: reads the frame of [`Clipboard::copy_then_restore`] from `input`, waits
/// `wait` (or until a later copy on this display supersedes it), then puts the previous contents
/// back (or empties the clipboard) if the clipboard still holds the secret.
pub fn restore_later(
    clip: &Clipboard,
    input: &mut impl Read,
    wait: Duration,
) -> Result<(), ClipboardError> {
    let mut frame = SecretBytes::new(Vec::new());
    input
        .read_to_end(frame.expose_mut())
        .map_err(ClipboardError::Read)?;
    let f = frame.expose();
    let len_bytes: [u8; 8] = f
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(ClipboardError::Malformed)?;
    let len =
        usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| ClipboardError::Malformed)?;
    let secret = f
        .get(8..8usize.saturating_add(len))
        .ok_or(ClipboardError::Malformed)?;
    let rest = &f[8 + len..];
    let before = match rest.first() {
        Some(1) => Some(&rest[1..]),
        Some(0) => None,
        _ => return Err(ClipboardError::Malformed),
    };
    // Listen for a later copy on this display (see `Clipboard::supersede`) while waiting.
    let sock = &clip.socket;
    let listener = listen(sock);
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(l) = listener.as_ref().and_then(|l| l.try_clone().ok()) {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // Only "now" counts: `listen`'s probe of a stale socket connects and says nothing.
            for mut s in l.incoming().flatten() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut word = [0u8; 3];
                if s.read_exact(&mut word).is_ok() && &word == b"now" {
                    let _ = tx.send(s);
                    return;
                }
            }
        });
    }
    let early = rx.recv_timeout(wait).ok();
    drop(tx);
    let now = clip.paste();
    let result = if now.as_ref().map(|n| n.expose().as_slice()) == Some(secret) {
        clip.copy(before.unwrap_or(b""))
    } else {
        Ok(())
    };
    // Gone before we answer, so the next job can take the name.
    if listener.is_some() {
        let _ = std::fs::remove_file(sock);
    }
    if let Some(mut s) = early {
        let _ = s.write_all(b"done");
    }
    result
}

/// Binds the clearing job's socket; a stale one (nobody answers) is replaced. `None` when
/// another live job holds it or the folder is not writable: we then only wait out our time.
fn listen(sock: &Path) -> Option<UnixListener> {
    match UnixListener::bind(sock) {
        Ok(l) => Some(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(sock).is_ok() {
                return None;
            }
            std::fs::remove_file(sock).ok()?;
            UnixListener::bind(sock).ok()
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> Clipboard {
        Clipboard {
            copy: vec!["true".into()],
            paste: vec!["false".into()],
            socket: std::env::temp_dir().join("mv-pass-clip-test-never-bound"),
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        for bad in [
            &b""[..],
            &[1, 0, 0][..],
            &[9, 0, 0, 0, 0, 0, 0, 0, b'x'][..],
        ] {
            let r = restore_later(&fake(), &mut &bad[..], Duration::ZERO);
            assert!(matches!(r, Err(ClipboardError::Malformed)), "{bad:?}");
        }
    }

    #[test]
    fn selections_parse_as_pass_names_them() {
        assert_eq!(Selection::parse("primary"), Some(Selection::Primary));
        assert_eq!(Selection::parse("PRIMARY"), None);
        assert_eq!(Selection::default(), Selection::Clipboard);
    }
}
