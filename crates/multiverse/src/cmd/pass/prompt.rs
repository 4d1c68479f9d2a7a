//! Talking to the person: pass's prompts and confirmations, and where a secret goes instead of
//! the terminal (the clipboard through [`mv_pass::Clipboard`], a QR code through `qrencode`).

use super::keys::which;
use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::secret::{SecretBytes, SecretString};
use mv_pass::EntryName;
use mv_pass::{
    Clipboard, ClipboardError, ClipboardSelection as Selection, ClipboardSession as Session,
};
use std::io::{BufRead, IsTerminal, Read, Write};

/// Whether stdin is a terminal (pass asks before overwriting only then).
pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// pass's `yesno`: without a terminal the answer is yes; on one, anything but y/Y stops.
pub(super) fn yesno(question: &str) -> Result<(), CliError> {
    if !interactive() {
        return Ok(());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y") {
        Ok(())
    } else {
        Err(CliError::failure_msg("not confirmed: nothing changed"))
    }
}

/// Reads an entry's contents as pass does: `-m` everything up to end of input; `-e` one line
/// (shown while typed); else, on a terminal, twice without echo. From a pipe without `-e`, pass
/// reads the password twice: a second line must match the first (one line alone is accepted).
pub(super) fn read_new_secret(
    name: &EntryName,
    echo: bool,
    multiline: bool,
) -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() && !multiline {
        if echo {
            eprint!("Enter password for {name}: ");
            let _ = std::io::stderr().flush();
            let mut line = SecretString::new(String::new());
            stdin.lock().read_line(line.expose_mut())?;
            let text = line.expose().trim_end_matches(['\n', '\r']).to_string();
            return Ok(SecretString::new(format!("{text}\n")));
        }
        let a = SecretString::new(rpassword::prompt_password(format!(
            "Enter password for {name}: "
        ))?);
        let b = SecretString::new(rpassword::prompt_password(format!(
            "Retype password for {name}: "
        ))?);
        if a != b {
            return Err(CliError::usage_msg(
                "Error: the entered passwords do not match.",
            ));
        }
        return Ok(SecretString::new(format!("{}\n", a.expose())));
    }
    if stdin.is_terminal() {
        eprintln!("Enter contents of {name} and press Ctrl+D when finished:\n");
    }
    let mut raw = SecretBytes::new(Vec::new());
    stdin
        .lock()
        .read_to_end(raw.expose_mut())
        .hint("could not read the entry from stdin")?;
    let text = String::from_utf8(raw.expose().clone())
        .map_err(|_| CliError::usage_msg("the entry is not UTF-8 text"))?;
    let text = SecretString::new(text);
    if multiline {
        return Ok(text);
    }
    let mut lines = text.expose().lines();
    let first = SecretString::new(lines.next().unwrap_or("").to_string());
    if !echo {
        if let Some(second) = lines.next() {
            if second != first.expose() {
                return Err(CliError::usage_msg(
                    "Error: the entered passwords do not match.",
                ));
            }
        }
    }
    Ok(SecretString::new(format!("{}\n", first.expose())))
}

/// `--qrcode`: the text as a QR code on the terminal by `qrencode -t utf8` (pass's tool), the
/// text on its stdin.
pub(super) fn qrcode(text: &str) -> Result<(), CliError> {
    if !which("qrencode") {
        return Err(CliError::failure_msg("qrencode is not installed")
            .with_hint("install qrencode, or use --clip"));
    }
    let mut child = std::process::Command::new("qrencode")
        .args(["-t", "utf8"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes())?;
    }
    let st = child.wait()?;
    if !st.success() {
        return Err(CliError::failure_msg(format!("qrencode failed ({st})")));
    }
    Ok(())
}

/// One line from stdin, or a prompt on a terminal (hidden and asked twice unless `echo`).
pub(super) fn read_line_secret(prompt: &str, echo: bool) -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        if echo {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        } else {
            let a = SecretString::new(rpassword::prompt_password(prompt)?);
            let b = SecretString::new(rpassword::prompt_password(format!("Retype: {prompt}"))?);
            if a != b {
                return Err(CliError::usage_msg(
                    "Error: the entered values do not match.",
                ));
            }
            return Ok(a);
        }
    }
    let mut line = SecretString::new(String::new());
    stdin.lock().read_line(line.expose_mut())?;
    let trimmed = line.expose().trim().to_string();
    Ok(SecretString::new(trimmed))
}

/// The hidden subcommand that clears the clipboard later (see [`clipboard`]).
const CLIP_RESTORE: &str = "__clip-restore";

/// The clipboard of this session, with pass's `PASSWORD_STORE_X_SELECTION` (else `clipboard`).
fn detect() -> Result<Clipboard, CliError> {
    let sel = std::env::var("PASSWORD_STORE_X_SELECTION")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "clipboard".into());
    let selection = Selection::parse(&sel).ok_or_else(|| {
        CliError::usage_msg(format!(
            "PASSWORD_STORE_X_SELECTION={sel:?}: expected clipboard, primary or secondary"
        ))
    })?;
    Clipboard::detect(&Session::from_env(), selection).map_err(|e| match e {
        ClipboardError::Unavailable => {
            CliError::usage_msg(e).with_hint("print it instead (drop --clip)")
        }
        other => other.into(),
    })
}

/// Copies `secret` to the clipboard and, after `PASSWORD_STORE_CLIP_TIME` seconds (default
/// 45), puts back what was there before, as pass 1.7 does, but only if the clipboard still holds
/// `secret`. The waiting is done by a detached `pass __clip-restore` of this binary
/// ([`Clipboard::copy_then_restore`]); the secret reaches it on a pipe, never a command line.
pub(super) fn clipboard(g: &Global, secret: &[u8], what: &str) -> Result<(), CliError> {
    let clip = detect()?;
    let secs: u64 = match std::env::var("PASSWORD_STORE_CLIP_TIME") {
        Ok(s) if !s.is_empty() => s.trim().parse().map_err(|_| {
            CliError::usage_msg(format!(
                "PASSWORD_STORE_CLIP_TIME={s:?} is not a number of seconds"
            ))
        })?,
        _ => 45,
    };
    let mut restorer = std::process::Command::new(std::env::current_exe()?);
    restorer.args(["pass", CLIP_RESTORE, "--secs", &secs.to_string()]);
    clip.copy_then_restore(secret, restorer)
        .map_err(|e| match e {
            ClipboardError::Copy(io) => {
                CliError::from(io).with_hint("could not copy to the clipboard")
            }
            other => other.into(),
        })?;
    g.say(format!(
        "Copied {what} to clipboard. Will clear in {secs} seconds."
    ));
    Ok(())
}

/// `pass __clip NAME`, the extensions' `clip TEXT NAME`: copies what comes on stdin (the text,
/// never on a command line) as [`clipboard`] does.
pub(super) fn clip_stdin(g: &Global, name: &str) -> Result<(), CliError> {
    let mut text = SecretBytes::new(Vec::new());
    std::io::stdin().lock().read_to_end(text.expose_mut())?;
    clipboard(g, text.expose(), name)
}

/// `pass __clip-restore --secs N`: the clearing job ([`mv_pass::restore_clipboard_later`]).
pub(super) fn clip_restore(secs: u64) -> Result<(), CliError> {
    let clip = detect()?;
    mv_pass::restore_clipboard_later(
        &clip,
        &mut std::io::stdin().lock(),
        std::time::Duration::from_secs(secs),
    )
    .map_err(|e| match e {
        ClipboardError::Malformed => CliError::usage_msg(format!("{CLIP_RESTORE}: {e}")),
        other => other.into(),
    })
}
