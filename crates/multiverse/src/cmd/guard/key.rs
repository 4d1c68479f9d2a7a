//! `guard hide`, `reveal`, `enroll` and `unlock`: the LUKS key hidden in an image. Reading the key
//! and the passphrase, and printing; hiding, finding and opening are `mv_guard`'s.

use super::args::{EnrollArgs, HideArgs, KeyArgs, PassArgs, RevealArgs, UnlockArgs};
use super::load_config;
use crate::error::{CliError, Hinted};
use crate::global::Global;
use crate::secret_input;
use mv_core::secret::{SecretBytes, SecretString};
use mv_guard::container::{self, HideError, HideFile, HideFileError, HideFileOutcome, KdfParams};
use mv_guard::token::{TokenKeyError, TokenPartitions};
use mv_guard::Cover;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;

/// The Argon2id parameters of `--kdf-memory`, warning when they are weak.
fn params(pass: &PassArgs) -> Result<KdfParams, CliError> {
    let d = KdfParams::DEFAULT;
    let p = KdfParams::new(pass.kdf_memory, d.iterations(), d.parallelism())
        .usage()
        .hint("--kdf-memory is in KiB, at least 8")?;
    secret_input::warn_if_weak(&p);
    Ok(p)
}

fn image_passphrase(pass: &PassArgs, confirm: bool) -> Result<SecretString, CliError> {
    secret_input::passphrase(pass.passphrase_file.as_deref(), "Image passphrase", confirm)
}

fn get_key(g: &Global, k: &KeyArgs, image_pass: &SecretString) -> Result<SecretBytes, CliError> {
    let read_stdin = || -> Result<SecretBytes, CliError> {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .hint("could not read the key from stdin")?;
        Ok(SecretBytes::new(buf))
    };
    match &k.key {
        Some(p) if p.as_os_str() == "-" => return read_stdin(),
        Some(p) => {
            return std::fs::read(p).map(SecretBytes::new).map_err(|e| {
                CliError::usage_msg(format!("cannot read key file {}: {e}", p.display()))
            })
        }
        None => {}
    }
    if !std::io::stdin().is_terminal() {
        let key = read_stdin()?;
        if !key.expose().is_empty() {
            return Ok(key);
        }
    }
    let name: mv_core::IdentityName = k
        .machine
        .parse()
        .usage()
        .hint("--machine is a machine's FQDN, e.g. host.multiverse")?;
    let store = mv_identity::IdentityStore::load(&g.root)
        .hint("no --key given: the default key is the machine's derived `luks` key, which needs the identity (`multiverse identity new`)")?;
    let id_pass = match &k.identity_passphrase_file {
        Some(f) => secret_input::passphrase(Some(f), "Identity passphrase", false)?,
        None => image_pass.clone(),
    };
    let root = store
        .unseal(id_pass.expose().as_bytes())
        .usage()
        .hint("the identity passphrase is the image passphrase unless --identity-passphrase-file is given")?;
    Ok(root.luks_key(&name))
}

fn hide_error(e: HideError) -> CliError {
    let hint = match &e {
        HideError::Capacity { .. } => {
            Some("use a larger cover (a 512x512 photo holds a 64-byte key easily)")
        }
        HideError::KeyTooLong(_) => {
            Some("LUKS key files of 64 bytes are plenty; `multiverse identity` derives one")
        }
        _ => None,
    };
    let c = CliError::from(e);
    match hint {
        Some(h) => c.with_hint(h),
        None => c,
    }
}

fn reveal_error(e: container::RevealError) -> CliError {
    let hint = match e {
        container::RevealError::NotFound => "check the passphrase and --kdf-memory; the image must be the one written by `guard hide`, unconverted",
        container::RevealError::Damaged => "the image was re-saved or edited; use the original file or hide the key again",
    };
    CliError::from(e).with_hint(hint)
}

/// Hides `key` into `cover` → `out`, idempotently, and says what it did.
fn hide_into(
    g: &Global,
    cover: &Path,
    out: &Path,
    key: &SecretBytes,
    pass: &[u8],
    params: KdfParams,
) -> Result<(), CliError> {
    let h = HideFile {
        cover,
        out,
        key: key.expose(),
        passphrase: pass,
        params,
        dry_run: g.dry_run,
    };
    let len = key.expose().len();
    match container::hide_file(&h) {
        Ok(HideFileOutcome::Unchanged) => g.say(format!(
            "{}: already holds this key under this passphrase; unchanged",
            out.display()
        )),
        Ok(HideFileOutcome::WouldHide {
            width,
            height,
            layout,
            depth,
            need,
            have,
        }) => g.say(format!(
            "would hide a {len}-byte key in {} ({width}x{height} {layout:?} {depth}-bit, {need} of {have} usable samples needed) and write {}",
            cover.display(),
            out.display()
        )),
        Ok(HideFileOutcome::Hidden) => {
            g.say(format!("hid a {len}-byte key in {}", out.display()))
        }
        Err(HideFileError::Hide(e)) => return Err(hide_error(e)),
        Err(e) => return Err(CliError::from(e)),
    }
    Ok(())
}

pub(super) fn hide(g: &Global, a: HideArgs) -> Result<(), CliError> {
    let params = params(&a.pass)?;
    let pass = image_passphrase(&a.pass, true)?;
    let key = get_key(g, &a.key, &pass)?;
    hide_into(g, &a.cover, &a.out, &key, pass.expose().as_bytes(), params)
}

fn reveal_key(image: &Path, pass: &PassArgs) -> Result<SecretBytes, CliError> {
    let params = params(pass)?;
    let cover = Cover::read(image).map_err(CliError::from)?;
    let p = image_passphrase(pass, false)?;
    container::reveal(&cover, p.expose().as_bytes(), params).map_err(reveal_error)
}

pub(super) fn reveal(g: &Global, a: RevealArgs) -> Result<(), CliError> {
    let key = reveal_key(&a.image, &a.pass)?;
    let Some(path) = &a.out else {
        if std::io::stdout().is_terminal() {
            return Err(
                CliError::usage_msg("refusing to print a raw key on a terminal")
                    .with_hint("pipe it (`| cryptsetup open --key-file=- ...`) or pass --out FILE"),
            );
        }
        let mut out = std::io::stdout().lock();
        out.write_all(key.expose())?;
        out.flush()?;
        return Ok(());
    };
    if g.dry_run {
        g.say(format!(
            "would write the {}-byte key to {} (mode 0600)",
            key.expose().len(),
            path.display()
        ));
    } else if mv_core::fsutil::write_secret(path, key.expose())? {
        g.say(format!("wrote the key to {}", path.display()));
    } else {
        g.say(format!(
            "{}: already holds this key; unchanged",
            path.display()
        ));
    }
    Ok(())
}

fn luks_error(e: mv_guard::luks::LuksError) -> CliError {
    CliError::from(e)
        .with_hint("is cryptsetup installed, and is the device a LUKS device you may open (root)?")
}

pub(super) fn enroll(g: &Global, a: EnrollArgs) -> Result<(), CliError> {
    let params = params(&a.pass)?;
    let pass = image_passphrase(&a.pass, true)?;
    let key = get_key(g, &a.key, &pass)?;
    // Check the cover first: nothing is enrolled for an image we cannot write.
    let cover = Cover::read(&a.cover).map_err(CliError::from)?;
    container::capacity(&cover, key.expose().len()).map_err(hide_error)?;
    let add = mv_guard::luks::add_key_argv(&a.luks, &a.existing_key_file, a.fast_slot);
    if mv_guard::luks::key_opens(&a.luks, &key).map_err(luks_error)? {
        g.say(format!(
            "{}: the key already opens a keyslot; unchanged",
            a.luks.display()
        ));
    } else if g.dry_run {
        g.say(format!("would run: {} (new key on stdin)", add.join(" ")));
    } else {
        mv_guard::luks::run_with_key(&add, &key).map_err(luks_error)?;
        g.say(format!(
            "added the key to a keyslot of {}",
            a.luks.display()
        ));
    }
    hide_into(g, &a.cover, &a.out, &key, pass.expose().as_bytes(), params)
}

pub(super) fn unlock(g: &Global, a: UnlockArgs) -> Result<(), CliError> {
    let key = match (&a.image, &a.token_dir) {
        (Some(img), _) => reveal_key(img, &a.pass)?,
        (None, Some(dir)) => {
            let params = params(&a.pass)?;
            let p = image_passphrase(&a.pass, false)?;
            mv_guard::token::find_key_in_dir(dir, p.expose().as_bytes(), params)
                .map_err(token_key_error)?
        }
        (None, None) => {
            let Some(key) = from_armed_token(g, &a)? else {
                return Ok(());
            };
            key
        }
    };
    let argv = if a.test {
        mv_guard::luks::test_argv(&a.luks)
    } else {
        mv_guard::luks::open_argv(&a.luks, &a.name)
    };
    if g.dry_run {
        g.say(format!("would run: {} (key on stdin)", argv.join(" ")));
        return Ok(());
    }
    if !a.test && Path::new("/dev/mapper").join(&a.name).exists() {
        g.say(format!("/dev/mapper/{} is already open; unchanged", a.name));
        return Ok(());
    }
    mv_guard::luks::run_with_key(&argv, &key)
        .map_err(luks_error)
        .usage()?;
    g.say(if a.test {
        format!("the hidden key opens {}", a.luks.display())
    } else {
        format!("opened {} as /dev/mapper/{}", a.luks.display(), a.name)
    });
    Ok(())
}

fn token_key_error(e: TokenKeyError) -> CliError {
    let hint = match &e {
        TokenKeyError::NotInDir { .. } => {
            Some("check the passphrase and that the token is the right one")
        }
        TokenKeyError::NotPlugged(_) => Some("plug the token in, or pass --image/--token-dir"),
        TokenKeyError::NotOnToken { .. } => Some("check the passphrase"),
        TokenKeyError::Umount { .. } => {
            Some("unmount it by hand (`umount` the folder named above) before unplugging the token")
        }
        _ => None,
    };
    let c = CliError::from(e);
    match hint {
        Some(h) => c.with_hint(h),
        None => c,
    }
}

/// Looks for the image on the armed token's partitions (each mounted read-only in turn).
/// `Ok(None)` in dry-run (the mount lines are printed instead).
fn from_armed_token(g: &Global, a: &UnlockArgs) -> Result<Option<SecretBytes>, CliError> {
    let spec = load_config(g)?
        .1
        .and_then(|c| c.token_spec().ok().flatten())
        .ok_or_else(|| {
            CliError::usage_msg("no --image, no --token-dir and no armed token to look on")
                .with_hint("pass --token-dir /media/token, or arm the token first")
        })?;
    let token = TokenPartitions::find(&a.sys, &spec).map_err(token_key_error)?;
    if g.dry_run {
        for dev in &token.partitions {
            g.say(format!("would run: {}", token.mount_argv(dev).join(" ")));
        }
        return Ok(None);
    }
    let params = params(&a.pass)?;
    let p = image_passphrase(&a.pass, false)?;
    mv_guard::token::find_key_on_token(&token, p.expose().as_bytes(), params)
        .map(Some)
        .map_err(token_key_error)
}
