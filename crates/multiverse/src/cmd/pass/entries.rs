//! The commands that write entries: `init`, `insert`, `generate`, `edit`, `rm`, `mv`/`cp`.

use super::keys::{finish, Ctx};
use super::prompt::{clipboard, interactive, qrcode, read_new_secret, yesno};
use super::{args::Output, entry, new_entry};
use crate::error::CliError;
use crate::global::Global;
use mv_core::secret::SecretString;
use mv_identity::IdentityStore;
use mv_pass::{
    Change, Charset, Crypto, EditError, Edited, EntryName, GenerateOptions, MoveOptions,
    RemoveOptions, StoreError,
};

pub(super) fn report_change(g: &Global, what: &str, ch: &Change) {
    let git = if ch.committed { " (committed)" } else { "" };
    g.say(format!("{what}{git}"));
}

pub(super) fn init(
    ctx: &Ctx<'_>,
    path: Option<String>,
    mut keyids: Vec<String>,
) -> Result<(), CliError> {
    // pass strips a trailing slash from -p in effect (the folder is the same).
    let sub = path
        .as_deref()
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
        .map(entry)
        .transpose()?;
    let where_ = sub.as_ref().map_or(String::new(), |s| format!(" ({s})"));
    if keyids.len() == 1 && keyids[0].is_empty() {
        // `init -p SUB ""`: remove that folder's .gpg-id; what it covered falls back to the one above.
        if ctx.g.dry_run {
            ctx.g.say(format!(
                "would remove the .gpg-id{where_} and re-encrypt what it covered"
            ));
            return Ok(());
        }
        let crypto = ctx.crypto_read_lazy();
        let ch = finish(&crypto, ctx.store.deinit(sub.as_ref(), &crypto))?;
        report_change(
            ctx.g,
            &format!(
                "removed {}; {} entr{} re-encrypted",
                ch.files[0].display(),
                ch.files.len() - 1,
                if ch.files.len() == 2 { "y" } else { "ies" }
            ),
            &ch,
        );
        return Ok(());
    }
    if keyids.iter().any(String::is_empty) {
        return Err(CliError::usage_msg(
            "an empty gpg-id only works alone (it removes the .gpg-id)",
        ));
    }
    if keyids.is_empty() {
        // The identity's @user key is the default.
        if !IdentityStore::exists(&ctx.g.root) {
            return Err(CliError::usage_msg(
                "no key id given and the tree has no identity to take the @user key from",
            )
            .with_hint(
                "pass a key id (`multiverse pass init KEYID`) or create an identity first",
            ));
        }
        let root = ctx
            .identity_root()?
            .ok_or_else(|| CliError::failure_msg("the identity disappeared while reading it"))?;
        let key = ctx.identity_key(&root)?;
        keyids.push(mv_pass::secret_fingerprint(&key));
    }
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would set the recipients{where_} to {} and re-encrypt what it covers",
            keyids.join(", ")
        ));
        return Ok(());
    }
    let crypto = ctx.crypto_read_lazy();
    let ch = finish(&crypto, ctx.store.init(sub.as_ref(), &keyids, &crypto))?;
    if ch.files.is_empty() {
        ctx.g.say(format!(
            "Password store already initialized for {}{where_}: unchanged",
            keyids.join(", ")
        ));
    } else {
        report_change(
            ctx.g,
            &format!(
                "Password store initialized for {}{where_}; {} entr{} re-encrypted",
                keyids.join(", "),
                ch.files.len() - 1,
                if ch.files.len() == 2 { "y" } else { "ies" }
            ),
            &ch,
        );
    }
    Ok(())
}

pub(super) fn insert(
    ctx: &Ctx<'_>,
    name: &str,
    echo: bool,
    multiline: bool,
    force: bool,
) -> Result<(), CliError> {
    let name = new_entry(name)?;
    if !force && ctx.store.contains(&name) {
        yesno(&format!(
            "An entry already exists for {name}. Overwrite it?"
        ))?;
    }
    let content = read_new_secret(&name, echo, multiline)?;
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would write {}",
            name.file_in(ctx.store.dir()).display()
        ));
        return Ok(());
    }
    let crypto = ctx.crypto_write()?;
    let msg = format!("Add given password for {name} to store.");
    write_entry(
        ctx,
        &name,
        &content,
        &msg,
        crypto.as_ref(),
        &format!("Added {name}"),
    )
}

/// Writes `content` as entry `name` (committed with pass's message `msg` in a git store) unless it
/// already holds exactly that, and says which it was.
pub(super) fn write_entry(
    ctx: &Ctx<'_>,
    name: &EntryName,
    content: &SecretString,
    msg: &str,
    crypto: &dyn Crypto,
    what: &str,
) -> Result<(), CliError> {
    match ctx
        .store
        .write_if_changed(name, content.expose().as_bytes(), msg, crypto)?
    {
        Some(ch) => report_change(ctx.g, what, &ch),
        None => ctx.g.say(format!("{name}: unchanged")),
    }
    Ok(())
}

/// `generate`'s switches as typed.
pub(super) struct GenerateFlags {
    /// Not `--no-symbols`.
    pub(super) symbols: bool,
    /// `--in-place`.
    pub(super) in_place: bool,
    /// `--force`.
    pub(super) force: bool,
    /// `--clip`, `--qrcode` or printed.
    pub(super) output: Output,
}

pub(super) fn generate(
    ctx: &Ctx<'_>,
    name: &str,
    length: Option<String>,
    flags: &GenerateFlags,
) -> Result<(), CliError> {
    let GenerateFlags {
        symbols,
        in_place,
        force,
        output,
    } = *flags;
    let name = new_entry(name)?;
    // pass's `${VAR:-default}`: an empty variable is the default.
    let length = length.or_else(|| {
        std::env::var("PASSWORD_STORE_GENERATED_LENGTH")
            .ok()
            .filter(|s| !s.is_empty())
    });
    let set_var = if symbols {
        "PASSWORD_STORE_CHARACTER_SET"
    } else {
        "PASSWORD_STORE_CHARACTER_SET_NO_SYMBOLS"
    };
    let set = match std::env::var_os(set_var).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let spec = v
                .to_str()
                .ok_or_else(|| CliError::usage_msg(format!("{set_var} is not valid text")))?;
            Some(mv_pass::tr_set(spec).map_err(|e| {
                CliError::usage_msg(format!("{set_var}={spec:?}: {e}")).with_hint(
                    "it is a tr(1) set, e.g. '[:alnum:]' or 'a-z0-9_'; unset it for pass's default",
                )
            })?)
        }
    };
    let len = match length {
        Some(s) => s.parse::<usize>().map_err(|_| {
            CliError::usage_msg(format!("Error: pass-length \"{s}\" must be a number."))
        })?,
        None => mv_pass::DEFAULT_LENGTH,
    };
    if len == 0 {
        return Err(CliError::usage_msg(
            "Error: pass-length must be greater than zero.",
        ));
    }
    let exists = ctx.store.contains(&name);
    if !force && !in_place && exists {
        yesno(&format!(
            "An entry already exists for {name}. Overwrite it?"
        ))?;
    }
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would write a new {len}-character password to {}",
            name.file_in(ctx.store.dir()).display()
        ));
        return Ok(());
    }
    let crypto = if in_place && exists {
        ctx.crypto_read()?
    } else {
        ctx.crypto_write()?
    };
    let opts = GenerateOptions {
        length: len,
        charset: match set {
            Some(set) => Charset::Set(set),
            None if symbols => Charset::Symbols,
            None => Charset::Alnum,
        },
        in_place,
        // pass overwrites once asked above.
        force: true,
    };
    let (pw, ch) = ctx.store.generate(&name, &opts, crypto.as_ref())?;
    match output {
        Output::Clip(_) => return clipboard(ctx.g, pw.expose().as_bytes(), name.as_str()),
        Output::Qr(_) => return qrcode(pw.expose()),
        Output::Print => {}
    }
    if ctx.g.json {
        let v = serde_json::json!({"name": name.as_str(), "password": pw.expose(), "committed": ch.committed});
        println!("{v}");
    } else {
        // pass's exact bytes, colours included.
        println!(
            "\x1b[1mThe generated password for \x1b[4m{name}\x1b[24m is:\x1b[0m\n\x1b[1m\x1b[93m{}\x1b[0m",
            pw.expose()
        );
    }
    Ok(())
}

pub(super) fn edit(ctx: &Ctx<'_>, name: &str) -> Result<(), CliError> {
    let name = entry(name)?;
    if ctx.g.dry_run {
        ctx.g.say(format!("would edit {name} with $EDITOR"));
        return Ok(());
    }
    let exists = ctx.store.contains(&name);
    let crypto = if exists {
        ctx.crypto_read()?
    } else {
        ctx.crypto_write()?
    };
    let old = if exists {
        Some(ctx.store.read(&name, crypto.as_ref())?)
    } else {
        None
    };
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "vi".to_string());
    let file = format!("{}.txt", name.as_str().replace('/', "-"));
    // pass's two refusals, exit 1 as pass: "New password not saved." and "Password unchanged.".
    let new = match mv_pass::edit_secret(old.as_ref(), &file, &editor) {
        Ok(Edited::Changed(new)) => new,
        Ok(Edited::NotSaved) => {
            return Err(CliError::failure_msg(format!(
                "New password for {name} not saved."
            )))
        }
        Ok(Edited::Unchanged) => {
            return Err(CliError::failure_msg(format!(
                "Password for {name} unchanged."
            )))
        }
        Err(e @ EditError::EditorFailed { .. }) => return Err(CliError::failure_msg(e)),
        Err(e) => return Err(e.into()),
    };
    let editor = std::env::var("EDITOR").unwrap_or_else(|_| "editor".to_string());
    let verb = if exists { "Edit" } else { "Add" };
    let ch = ctx.store.write_with_message(
        &name,
        new.expose(),
        &format!("{verb} password for {name} using {editor}."),
        crypto.as_ref(),
    )?;
    report_change(ctx.g, &format!("Saved {name}"), &ch);
    Ok(())
}

pub(super) fn remove(
    ctx: &Ctx<'_>,
    raw: &str,
    recursive: bool,
    force: bool,
) -> Result<(), CliError> {
    let name = entry(raw.trim_end_matches('/'))?;
    let exists = ctx.store.contains(&name) || name.dir_in(ctx.store.dir()).exists();
    if !exists {
        return Err(CliError::from(StoreError::NotFound(raw.to_string())));
    }
    if !force {
        yesno(&format!("Are you sure you would like to delete {raw}?"))?;
    }
    if ctx.g.dry_run {
        let what = if ctx.store.contains(&name) {
            name.file_in(ctx.store.dir())
        } else {
            name.dir_in(ctx.store.dir())
        };
        ctx.g.say(format!("would remove {}", what.display()));
        return Ok(());
    }
    // `rm NAME/` means the folder even when an entry NAME exists too, as in pass.
    let ch = ctx
        .store
        .remove(
            &name,
            RemoveOptions {
                recursive,
                folder_only: raw.ends_with('/'),
            },
        )
        .map_err(|e| match e {
            StoreError::Fs(f) if f.source.kind() == std::io::ErrorKind::IsADirectory => {
                CliError::failure_msg(format!("`{name}` is a folder"))
                    .with_hint("use --recursive (-r)")
            }
            other => CliError::from(other),
        })?;
    report_change(ctx.g, &format!("Removed {name}"), &ch);
    Ok(())
}

pub(super) fn move_copy(
    ctx: &Ctx<'_>,
    from: &str,
    to: &str,
    copy: bool,
    force: bool,
) -> Result<(), CliError> {
    let from_raw = from;
    let from = entry(from.trim_end_matches('/'))?;
    let to_folder = to.ends_with('/');
    let to = entry(to.trim_end_matches('/'))?;
    let verb = if copy { "copy" } else { "move" };
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would {verb} {from} to {to}, re-encrypted for {to}'s recipients"
        ));
        return Ok(());
    }
    if !force && interactive() && (ctx.store.contains(&to) && !to_folder) {
        yesno(&format!("overwrite {to}?"))?;
    }
    let crypto = ctx.crypto_read_lazy();
    let opts = MoveOptions {
        copy,
        // pass overwrites unless asked on a terminal (answered above).
        force: true,
        to_folder,
        from_folder: from_raw.ends_with('/'),
    };
    let ch = finish(&crypto, ctx.store.move_or_copy(&from, &to, opts, &crypto))?;
    let done = if copy { "Copied" } else { "Renamed" };
    report_change(ctx.g, &format!("{done} {from} to {to}"), &ch);
    Ok(())
}
