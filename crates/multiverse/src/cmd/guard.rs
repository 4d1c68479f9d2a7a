//! `multiverse guard`: the LUKS key hidden in an image, and the kill switch.
//!
//! Parsing, prompting and printing only; the work is `mv_guard`'s. Keys come from `--key FILE`
//! (`-` for stdin), piped stdin, or the machine's derived `luks` key (`--machine`, unsealing the
//! identity); passphrases from `--passphrase-file`, env `MULTIVERSE_PASSPHRASE` or a prompt. Neither
//! ever appears on argv, ours or cryptsetup's.
//!
//! Exit codes: bad input (a JPEG cover, a too small cover, a bad token, a wrong passphrase) is 2;
//! a failing tool or a damaged image is 1.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use crate::secret_input;
use mv_core::secret::SecretBytes;
use mv_guard::chain::{Chain, Env, Status};
use mv_guard::config::{self, GuardConfig, SignalPolicy};
use mv_guard::container::{self, HideError, KdfParams, RevealError};
use mv_guard::image::Cover;
use mv_guard::pidfile::Liveness;
use mv_guard::token::{TokenSpec, Trigger};
use mv_guard::watch::{Outcome, Source, Watch, WatchEvent};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Seal a key with a passphrase and hide it in a PNG
    Hide(HideArgs),
    /// Print the key hidden in a PNG (raw bytes, for `cryptsetup open --key-file=-`)
    Reveal(RevealArgs),
    /// Add the key to a LUKS keyslot (cryptsetup) and hide it in a PNG
    Enroll(EnrollArgs),
    /// Find the image on the token, reveal the key and open the LUKS device
    Unlock(UnlockArgs),
    /// Arm the kill switch for one USB token
    Arm(ArmArgs),
    /// Disarm the kill switch (a running watcher stops), or with --for pause it
    Disarm(DisarmArgs),
    /// Show whether the kill switch is armed, the token present and the watcher running
    Status(SysArgs),
    /// The watcher daemon: runs the chain when the armed token is removed
    Watch(WatchArgs),
    /// Run the chain now (what the udev rule calls)
    Fire(SysArgs),
    /// Print (or write) the equivalent udev rule for a udev-only kill switch
    UdevRule(UdevRuleArgs),
    /// Send a uevent to the kernel for re-broadcast in another network namespace (tests, benchmark)
    #[command(hide = true)]
    Emit(EmitArgs),
}

/// Where the key comes from.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// Key file to hide (`-` for stdin); default: piped stdin, else the machine's `luks` key
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Machine whose derived `luks` key to use (unseals the identity)
    #[arg(long, value_name = "FQDN", default_value = "host.multiverse")]
    pub machine: String,
    /// Passphrase of the identity, when it differs from the image's
    #[arg(long, value_name = "FILE")]
    pub identity_passphrase_file: Option<PathBuf>,
}

/// The image passphrase and its Argon2id memory.
#[derive(Debug, clap::Args)]
pub struct PassArgs {
    /// Read the image passphrase from this file (else env MULTIVERSE_PASSPHRASE, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Argon2id memory in KiB; not stored in the image, so reveal needs the same value
    #[arg(long, value_name = "KIB", default_value_t = KdfParams::DEFAULT.memory_kib())]
    pub kdf_memory: u32,
}

impl PassArgs {
    fn params(&self) -> Result<KdfParams, CliError> {
        let d = KdfParams::DEFAULT;
        let p = KdfParams::new(self.kdf_memory, d.iterations(), d.parallelism())
            .usage()
            .hint("--kdf-memory is in KiB, at least 8")?;
        secret_input::warn_if_weak(&p);
        Ok(p)
    }
}

/// `guard hide`.
#[derive(Debug, clap::Args)]
pub struct HideArgs {
    /// The cover image (PNG: 8/16-bit grey, grey+alpha, RGB, RGBA)
    #[arg(long, value_name = "PNG")]
    pub cover: PathBuf,
    /// Where to write the image with the hidden key
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// `guard reveal`.
#[derive(Debug, clap::Args)]
pub struct RevealArgs {
    /// The image
    #[arg(long, value_name = "PNG")]
    pub image: PathBuf,
    /// Write the key to this file (mode 0600) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// `guard enroll`.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The LUKS device or file
    #[arg(long, value_name = "DEVICE_OR_FILE")]
    pub luks: PathBuf,
    /// A key file that already opens the LUKS device
    #[arg(long, value_name = "FILE")]
    pub existing_key_file: PathBuf,
    /// The key is random (the derived `luks` key is): give its keyslot PBKDF2 with 1000
    /// iterations so unlocking is instant. Never for a key a person chose
    #[arg(long)]
    pub fast_slot: bool,
    /// The cover image
    #[arg(long, value_name = "PNG")]
    pub cover: PathBuf,
    /// Where to write the image with the hidden key
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// `guard unlock`.
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// The image; default: the first *.png holding a key under --token-dir
    #[arg(long, value_name = "PNG", conflicts_with = "token_dir")]
    pub image: Option<PathBuf>,
    /// Where the token is mounted; default: mount the armed token's partitions read-only
    #[arg(long, value_name = "DIR")]
    pub token_dir: Option<PathBuf>,
    /// sysfs root (to find the armed token)
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sys: PathBuf,
    /// The LUKS device
    #[arg(long, value_name = "DEVICE")]
    pub luks: PathBuf,
    /// Mapping name (/dev/mapper/NAME)
    #[arg(long, default_value = "cryptroot")]
    pub name: String,
    /// Only check the key (`cryptsetup open --test-passphrase`)
    #[arg(long)]
    pub test: bool,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// `guard arm`.
#[derive(Debug, clap::Args)]
pub struct ArmArgs {
    /// SERIAL or VID:PID[:SERIAL] (VID and PID four hex digits, as lsusb shows them)
    #[arg(long)]
    pub token: String,
    /// What SIGTERM/SIGINT/SIGHUP do to the watcher: ignore, or fire the chain
    #[arg(long, value_enum)]
    pub on_signal: Option<SignalArg>,
    /// Which token event fires: remove (default), insert (a matching device plugged in after
    /// arming, e.g. while locked), or any; unchanged when re-arming without it
    #[arg(long = "on", value_enum, value_name = "EVENT")]
    pub trigger: Option<TriggerArg>,
}

/// `--on` on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TriggerArg {
    /// The token's removal
    Remove,
    /// A device matching the token plugged in
    Insert,
    /// Either
    Any,
}

impl From<TriggerArg> for Trigger {
    fn from(t: TriggerArg) -> Trigger {
        match t {
            TriggerArg::Remove => Trigger::Remove,
            TriggerArg::Insert => Trigger::Insert,
            TriggerArg::Any => Trigger::Any,
        }
    }
}

/// `guard disarm`.
#[derive(Debug, clap::Args)]
pub struct DisarmArgs {
    /// Only pause for this long (`90s`, `10m`, `2h`): the watcher keeps running and the token
    /// may be pulled meanwhile; removal fires again afterwards
    #[arg(long = "for", value_name = "DURATION")]
    pub pause: Option<String>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses `90`, `90s`, `10m`, `2h` into seconds.
fn parse_duration(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        c if c.is_ascii_digit() => (s, 1),
        _ => return None,
    };
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|v| *v > 0)
}

/// Signal policy on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SignalArg {
    /// Log and keep watching
    Ignore,
    /// Run the chain
    Fire,
}

/// System roots (tests point them at fixtures).
#[derive(Debug, clap::Args)]
pub struct SysArgs {
    /// sysfs root
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sys: PathBuf,
    /// procfs root
    #[arg(long = "proc", value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

/// `guard watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// `netlink` (the kernel) or `unix:PATH` (a datagram socket carrying uevents)
    #[arg(long, default_value = "netlink")]
    pub source: String,
    #[command(flatten)]
    pub sys: SysArgs,
}

/// `guard udev-rule`.
#[derive(Debug, clap::Args)]
pub struct UdevRuleArgs {
    /// Token (default: the armed one)
    #[arg(long)]
    pub token: Option<String>,
    /// Which event the rule matches (default: the armed configuration's, else remove)
    #[arg(long = "on", value_enum, value_name = "EVENT")]
    pub trigger: Option<TriggerArg>,
    /// Path of the multiverse binary in the rule
    #[arg(long, default_value = "/usr/local/bin/multiverse")]
    pub binary: String,
    /// Write the rule here instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `guard emit`.
#[derive(Debug, clap::Args)]
pub struct EmitArgs {
    /// add or remove
    #[arg(long)]
    pub action: String,
    /// Device path under /sys
    #[arg(long)]
    pub devpath: String,
    /// VID:PID
    #[arg(long)]
    pub product: String,
    /// The network namespace to send in (`/proc/PID/ns/net` of a watcher under `unshare -n`)
    #[arg(long, value_name = "PATH")]
    pub netns: PathBuf,
}

/// Runs the command.
pub fn run(g: &Global, c: Command) -> Result<(), CliError> {
    match c {
        Command::Hide(a) => hide(g, a),
        Command::Reveal(a) => reveal(g, a),
        Command::Enroll(a) => enroll(g, a),
        Command::Unlock(a) => unlock(g, a),
        Command::Arm(a) => arm(g, a),
        Command::Disarm(a) => disarm(g, a),
        Command::Status(a) => status(g, a),
        Command::Watch(a) => watch(g, a),
        Command::Fire(a) => fire(g, a),
        Command::UdevRule(a) => udev_rule(g, a),
        Command::Emit(a) => emit(a),
    }
}

fn read_cover(path: &Path) -> Result<Cover, CliError> {
    Cover::read(path).map_err(|e| {
        let usage = !matches!(e, mv_guard::image::ImageError::Read { .. });
        let mut c = CliError::from(e);
        if usage {
            c.kind = crate::error::Kind::Usage;
        }
        c
    })
}

fn get_key(
    g: &Global,
    k: &KeyArgs,
    image_pass: &mv_core::secret::SecretString,
) -> Result<SecretBytes, CliError> {
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
            return std::fs::read(p)
                .map(SecretBytes::new)
                .map_err(|e| anyhow::anyhow!("cannot read key file {}: {e}", p.display()))
                .usage()
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
    let mut c = CliError::from(e);
    c.kind = crate::error::Kind::Usage;
    if let Some(h) = hint {
        c = c.with_hint(h);
    }
    c
}

fn reveal_error(e: RevealError) -> CliError {
    match e {
        // A wrong passphrase is the person's input: exit 2.
        RevealError::NotFound => CliError::from(e).with_hint(
            "check the passphrase and --kdf-memory; the image must be the one written by `guard hide`, unconverted",
        ),
        RevealError::Damaged => CliError::from(e).with_hint(
            "the image was re-saved or edited; use the original file or hide the key again",
        ),
    }
}

/// Hides `key` into `cover_path` → `out`, idempotently. Returns whether it wrote.
fn hide_into(
    g: &Global,
    cover_path: &Path,
    out: &Path,
    key: &SecretBytes,
    pass: &[u8],
    params: KdfParams,
) -> Result<bool, CliError> {
    let mut cover = read_cover(cover_path)?;
    if let Ok(existing) = Cover::read(out) {
        if container::reveal(&existing, pass, params).is_ok_and(|k| k.expose() == key.expose()) {
            g.say(format!(
                "{}: already holds this key under this passphrase; unchanged",
                out.display()
            ));
            return Ok(false);
        }
    }
    if g.dry_run {
        let need = container::required_carriers(key.expose().len()).unwrap_or(0);
        if need > cover.carrier_count() || key.expose().is_empty() {
            container::hide(&mut cover, key.expose(), pass, params).map_err(hide_error)?;
        }
        g.say(format!(
            "would hide a {}-byte key in {} ({}x{} {:?} {}-bit, {} of {} usable samples needed) and write {}",
            key.expose().len(),
            cover_path.display(),
            cover.width,
            cover.height,
            cover.layout,
            cover.depth,
            need,
            cover.carrier_count(),
            out.display()
        ));
        return Ok(false);
    }
    container::hide(&mut cover, key.expose(), pass, params).map_err(hide_error)?;
    let bytes = cover.encode()?;
    mv_core::fsutil::write_public(out, &bytes)?;
    g.say(format!(
        "hid a {}-byte key in {}",
        key.expose().len(),
        out.display()
    ));
    Ok(true)
}

fn hide(g: &Global, a: HideArgs) -> Result<(), CliError> {
    let params = a.pass.params()?;
    let pass =
        secret_input::passphrase(a.pass.passphrase_file.as_deref(), "Image passphrase", true)?;
    let key = get_key(g, &a.key, &pass)?;
    hide_into(g, &a.cover, &a.out, &key, pass.expose().as_bytes(), params)?;
    Ok(())
}

fn reveal_key(image: &Path, pass: &PassArgs) -> Result<SecretBytes, CliError> {
    let params = pass.params()?;
    let cover = read_cover(image)?;
    let p = secret_input::passphrase(pass.passphrase_file.as_deref(), "Image passphrase", false)?;
    container::reveal(&cover, p.expose().as_bytes(), params).map_err(|e| {
        let usage = matches!(e, RevealError::NotFound);
        let mut c = reveal_error(e);
        if usage {
            c.kind = crate::error::Kind::Usage;
        }
        c
    })
}

fn reveal(g: &Global, a: RevealArgs) -> Result<(), CliError> {
    let key = reveal_key(&a.image, &a.pass)?;
    match &a.out {
        Some(path) => {
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
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(
                    CliError::usage_msg("refusing to print a raw key on a terminal").with_hint(
                        "pipe it (`| cryptsetup open --key-file=- ...`) or pass --out FILE",
                    ),
                );
            }
            let mut out = std::io::stdout().lock();
            out.write_all(key.expose())?;
            out.flush()?;
        }
    }
    Ok(())
}

fn luks_error(e: mv_guard::luks::LuksError) -> CliError {
    CliError::from(e)
        .with_hint("is cryptsetup installed, and is the device a LUKS device you may open (root)?")
}

fn enroll(g: &Global, a: EnrollArgs) -> Result<(), CliError> {
    let params = a.pass.params()?;
    let pass =
        secret_input::passphrase(a.pass.passphrase_file.as_deref(), "Image passphrase", true)?;
    let key = get_key(g, &a.key, &pass)?;
    // Check the cover first: nothing is enrolled for an image we cannot write.
    let cover = read_cover(&a.cover)?;
    let need = container::required_carriers(key.expose().len());
    if need.is_none_or(|n| n > cover.carrier_count()) {
        let mut c = cover.clone();
        container::hide(
            &mut c,
            key.expose(),
            pass.expose().as_bytes(),
            KdfParams::INSECURE_FAST,
        )
        .map_err(hide_error)?;
    }
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
    hide_into(g, &a.cover, &a.out, &key, pass.expose().as_bytes(), params)?;
    Ok(())
}

fn unlock(g: &Global, a: UnlockArgs) -> Result<(), CliError> {
    let key = match (&a.image, &a.token_dir) {
        (Some(img), _) => reveal_key(img, &a.pass)?,
        (None, Some(dir)) => {
            let params = a.pass.params()?;
            let p = secret_input::passphrase(
                a.pass.passphrase_file.as_deref(),
                "Image passphrase",
                false,
            )?;
            find_in_dir(dir, p.expose().as_bytes(), params)?
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

/// The first PNG under `dir` holding a key for this passphrase.
fn find_in_dir(dir: &Path, pass: &[u8], params: KdfParams) -> Result<SecretBytes, CliError> {
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read token folder {}: {e}", dir.display()))
        .usage()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    pngs.sort();
    let found = pngs.iter().find_map(|png| {
        let c = Cover::read(png).ok()?;
        container::reveal(&c, pass, params).ok()
    });
    found.ok_or_else(|| {
        CliError::usage_msg(format!(
            "no image under {} holds a key for this passphrase ({} PNG files tried)",
            dir.display(),
            pngs.len()
        ))
        .with_hint("check the passphrase and that the token is the right one")
    })
}

/// Mounts each partition of the armed token read-only in turn and looks for the image there.
/// `Ok(None)` in dry-run (the mount lines are printed instead).
fn from_armed_token(g: &Global, a: &UnlockArgs) -> Result<Option<SecretBytes>, CliError> {
    let spec = load_config(g)?
        .1
        .and_then(|c| c.token_spec().ok().flatten())
        .ok_or_else(|| {
            CliError::usage_msg("no --image, no --token-dir and no armed token to look on")
                .with_hint("pass --token-dir /media/token, or arm the token first")
        })?;
    let parts: Vec<String> = mv_guard::token::scan(&a.sys)
        .into_iter()
        .filter(|d| spec.matches(d))
        .flat_map(|d| mv_guard::token::block_devices(&a.sys, &d.devpath))
        .collect();
    if parts.is_empty() {
        return Err(CliError::usage_msg(format!(
            "the token {spec} is not plugged in (or has no storage)"
        ))
        .with_hint("plug the token in, or pass --image/--token-dir"));
    }
    let mnt = std::env::temp_dir().join(format!("multiverse-token-{}", std::process::id()));
    let mount = |dev: &str| -> Vec<String> {
        vec![
            "mount".into(),
            "-o".into(),
            "ro,nodev,nosuid,noexec".into(),
            format!("/dev/{dev}"),
            mnt.display().to_string(),
        ]
    };
    if g.dry_run {
        for dev in &parts {
            g.say(format!("would run: {}", mount(dev).join(" ")));
        }
        return Ok(None);
    }
    let params = a.pass.params()?;
    let p = secret_input::passphrase(a.pass.passphrase_file.as_deref(), "Image passphrase", false)?;
    std::fs::create_dir_all(&mnt)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", mnt.display()))?;
    let mut found = None;
    for dev in &parts {
        let argv = mount(dev);
        let mounted = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            continue;
        }
        found = find_in_dir(&mnt, p.expose().as_bytes(), params).ok();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        if found.is_some() {
            break;
        }
    }
    let _ = std::fs::remove_dir(&mnt);
    found.map(Some).ok_or_else(|| {
        CliError::usage_msg(format!(
            "no image on the token's partitions ({}) holds a key for this passphrase",
            parts.join(", ")
        ))
        .with_hint("check the passphrase")
    })
}

fn load_config(g: &Global) -> Result<(PathBuf, Option<GuardConfig>), CliError> {
    let path = config::path(&g.root);
    let cfg = GuardConfig::load(&path).map_err(config_error)?;
    Ok((path, cfg))
}

/// Saves the configuration; a folder root cannot trust is the person's to fix, like on loading.
fn save_config(cfg: &GuardConfig, path: &Path) -> Result<bool, CliError> {
    cfg.save(path).map_err(|e| match e {
        config::ConfigError::Untrusted(..) => config_error(e),
        e => e.into(),
    })
}

/// A configuration that cannot be used is the person's to fix (exit 2), with the way to fix it.
fn config_error(e: config::ConfigError) -> CliError {
    let hint = if matches!(e, config::ConfigError::Untrusted(..)) {
        "root runs the chain: the guard configuration, its folder and every folder above must be \
         owned by root and not writable by group or others (see docs/guard.md, \"Who may change \
         the chain\"); nothing was run"
    } else {
        "fix or delete the guard configuration, then `multiverse guard arm` again"
    };
    let mut c = CliError::from(e).with_hint(hint);
    c.kind = crate::error::Kind::Usage;
    c
}

fn pid_path(g: &Global) -> PathBuf {
    g.root.join("guard/watch.pid")
}

/// Whether our watcher runs: the pidfile's lock is held and the pid in it runs this executable,
/// started at the recorded time (see `mv_guard::pidfile`).
fn running_watcher(g: &Global) -> Liveness {
    mv_guard::pidfile::probe(&pid_path(g))
}

fn arm(g: &Global, a: ArmArgs) -> Result<(), CliError> {
    let spec: TokenSpec = a
        .token
        .parse()
        .usage()
        .hint("lsusb shows `ID 1050:0407`; the serial is in /sys/bus/usb/devices/*/serial")?;
    let (path, cfg) = load_config(g)?;
    let mut cfg = cfg.unwrap_or_default();
    cfg.armed = true;
    cfg.paused_until = None;
    cfg.token = Some(spec.to_string());
    if let Some(p) = a.on_signal {
        cfg.on_signal = match p {
            SignalArg::Ignore => SignalPolicy::Ignore,
            SignalArg::Fire => SignalPolicy::Fire,
        };
    }
    if let Some(t) = a.trigger {
        cfg.trigger = t.into();
    }
    // Today's messages unchanged for the default; the other choices are named.
    let on = if cfg.trigger.is_remove() {
        String::new()
    } else {
        format!(" (fires on {})", cfg.trigger)
    };
    if g.dry_run {
        g.say(format!(
            "would arm the kill switch for {spec}{on} in {}",
            path.display()
        ));
        return Ok(());
    }
    if save_config(&cfg, &path)? {
        g.say(format!(
            "armed for token {spec}{on}; start the watcher: multiverse guard watch (as root)"
        ));
    } else {
        g.say(format!("already armed for token {spec}{on}; unchanged"));
    }
    Ok(())
}

fn disarm(g: &Global, a: DisarmArgs) -> Result<(), CliError> {
    let pause = match &a.pause {
        Some(d) => Some(parse_duration(d).ok_or_else(|| {
            CliError::usage_msg(format!(
                "--for {d}: expected a duration like 90s, 10m or 2h"
            ))
        })?),
        None => None,
    };
    let (path, cfg) = load_config(g)?;
    let Some(mut cfg) = cfg.filter(|c| c.armed) else {
        g.say("not armed; unchanged");
        return Ok(());
    };
    if let Some(secs) = pause {
        let now = now_secs();
        if g.dry_run {
            g.say(format!(
                "would pause the kill switch for {secs} s in {}",
                path.display()
            ));
            return Ok(());
        }
        cfg.paused_until = Some(now + secs);
        save_config(&cfg, &path)?;
        g.say(format!(
            "paused for {secs} s: removing the token does nothing until then; the watcher keeps running"
        ));
        return Ok(());
    }
    if g.dry_run {
        g.say(format!(
            "would disarm in {} and stop the watcher",
            path.display()
        ));
        return Ok(());
    }
    cfg.armed = false;
    cfg.paused_until = None;
    save_config(&cfg, &path)?;
    match running_watcher(g) {
        Liveness::Running(pid) => {
            let _ = mv_guard::watch::notify_watcher(pid);
            g.say(format!("disarmed; told the watcher (pid {pid}) to stop"));
        }
        Liveness::NotRunning => g.say("disarmed"),
        Liveness::Unknown { why, .. } => g.say(format!(
            "disarmed; a watcher may be running but cannot be verified ({why}): not signalled, \
             it will not fire while disarmed"
        )),
    }
    Ok(())
}

fn status(g: &Global, a: SysArgs) -> Result<(), CliError> {
    let (path, cfg) = load_config(g)?;
    let cfg = cfg.unwrap_or_default();
    let spec = cfg.token_spec().usage()?;
    let present: Vec<_> = match &spec {
        Some(s) => mv_guard::token::scan(&a.sys)
            .into_iter()
            .filter(|d| s.matches(d))
            .collect(),
        None => vec![],
    };
    let watcher = running_watcher(g);
    // The memory step relies on the kernel zeroing freed pages (init_on_free=1, set by the
    // installer); without it the chain fills free memory instead, which is slower.
    let init_on_free = mv_guard::chain::init_on_free(&a.proc_root);
    if g.json {
        let v = serde_json::json!({
            "init_on_free": init_on_free,
            "config": path,
            "armed": cfg.armed,
            "token": cfg.token,
            "on_signal": cfg.on_signal,
            "trigger": cfg.trigger,
            "paused_until": cfg.paused_until,
            "token_present": present,
            "watcher_pid": match &watcher {
                Liveness::Running(pid) => Some(*pid),
                _ => None,
            },
            "watcher": match &watcher {
                Liveness::Running(_) => "running",
                Liveness::NotRunning => "not-running",
                Liveness::Unknown { .. } => "unknown",
            },
            "steps": cfg.steps.iter().map(|s| s.action.name()).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    let armed = match (cfg.armed, cfg.paused_until) {
        (false, _) => "no".to_string(),
        (true, Some(t)) if !cfg.fires_at(now_secs()) => {
            format!("yes, paused until {t} (unix time)")
        }
        (true, _) => "yes".to_string(),
    };
    println!("armed:    {armed}");
    println!("token:    {}", cfg.token.as_deref().unwrap_or("(none)"));
    println!("fires on: {}", cfg.trigger);
    println!(
        "present:  {}",
        if present.is_empty() {
            "no".to_string()
        } else {
            present
                .iter()
                .map(|d| d.devpath.clone())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "watcher:  {}",
        match &watcher {
            Liveness::Running(p) => format!("running (pid {p})"),
            Liveness::NotRunning => "not running".to_string(),
            Liveness::Unknown { why, .. } => format!("unknown ({why})"),
        }
    );
    println!(
        "memory:   {}",
        match init_on_free {
            Some(true) => "init_on_free=1: the kernel zeroes every page it frees".to_string(),
            Some(false) => format!(
                "WARNING: no init_on_free=1 on the kernel command line ({}/cmdline): freed pages \
                 keep their bytes until reused; the chain fills free memory instead (slower). \
                 Add init_on_free=1 to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub",
                a.proc_root.display()
            ),
            None => format!("unknown: cannot read {}/cmdline", a.proc_root.display()),
        }
    );
    println!(
        "chain:    {}",
        cfg.steps
            .iter()
            .map(|s| s.action.name())
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    Ok(())
}

fn print_event(g: &Global, e: &WatchEvent) {
    let mut out = std::io::stdout().lock();
    let line = if g.json {
        serde_json::to_string(e).unwrap_or_default()
    } else {
        match e {
            WatchEvent::Ready {
                token,
                trigger,
                present,
                source,
            } => format!(
                "watching {source} for the {} of token {token} ({} present now)",
                match trigger {
                    Trigger::Remove => "removal",
                    Trigger::Insert => "insertion",
                    Trigger::Any => "insertion or removal",
                },
                present.len()
            ),
            WatchEvent::Uevent {
                seqnum,
                action,
                devpath,
                decision,
            } => {
                format!(
                    "uevent {} {action} {devpath}: {decision:?}",
                    seqnum.unwrap_or(0)
                )
            }
            WatchEvent::Rejected { why } => format!("rejected datagram: {why}"),
            WatchEvent::Fire { cause } => format!("FIRE ({cause})"),
            WatchEvent::Action(r) => {
                let what = match &r.status {
                    Status::DryRun => "would run".to_string(),
                    Status::Ok => "ran".to_string(),
                    Status::Failed(e) => format!("FAILED ({e})"),
                    Status::Timeout => "TIMEOUT".to_string(),
                };
                format!(
                    "[{}{}] {what}: {}",
                    r.step,
                    if r.fallback { " fallback" } else { "" },
                    r.command
                )
            }
            WatchEvent::Signal { name, handled } => format!("signal {name}: {handled}"),
            WatchEvent::DisarmedIgnore => {
                "token removed or inserted but the guard is disarmed".into()
            }
            WatchEvent::ConfigRefused { why } => {
                format!("configuration refused, still armed with the chain it started with: {why}")
            }
        }
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn chain_of(cfg: &GuardConfig, a: &SysArgs) -> Chain {
    Chain {
        steps: cfg.steps.clone(),
        env: Env {
            sys: a.sys.clone(),
            proc_root: a.proc_root.clone(),
        },
    }
}

fn watch(g: &Global, a: WatchArgs) -> Result<(), CliError> {
    let (path, cfg) = load_config(g)?;
    let cfg = cfg
        .filter(|c| c.armed && c.token.is_some())
        .ok_or_else(|| {
            CliError::usage_msg("the kill switch is not armed")
                .with_hint("run `multiverse guard arm --token VID:PID:SERIAL` first")
        })?;
    let source = if a.source == "netlink" {
        Source::netlink()?
    } else if let Some(p) = a.source.strip_prefix("unix:") {
        Source::unix(Path::new(p))?
    } else {
        return Err(CliError::usage_msg(format!(
            "--source {}: expected netlink or unix:PATH",
            a.source
        )));
    };
    if !g.dry_run {
        if let Err(e) = mv_guard::watch::lock_memory() {
            tracing::warn!("cannot lock the watcher in memory ({e}): it may be swapped out");
        }
    }
    // Held (flock) until the watcher returns; removed on the way out, whatever the outcome.
    let _pidfile = if g.dry_run {
        None
    } else {
        Some(
            mv_guard::pidfile::Pidfile::acquire(&pid_path(g))
                .hint("`multiverse guard status` shows the running watcher")?,
        )
    };
    let w = Watch {
        config_path: path,
        chain: chain_of(&cfg, &a.sys),
        dry_run: g.dry_run,
    };
    let outcome = w.run(&cfg, source, &mut |e| print_event(g, e))?;
    match outcome {
        Outcome::Disarmed => Ok(()),
        Outcome::Fired if g.dry_run => Ok(()),
        Outcome::Fired => {
            // sysrq `o` only queues the power-off: the watcher gets here ~50 ms before the
            // kernel powers down (seen in the lab), so give it time before calling it failed.
            let powers_off = w
                .chain
                .steps
                .iter()
                .any(|s| matches!(s.action, mv_guard::chain::Action::PowerOff));
            if powers_off {
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            Err(CliError::failure_msg(
                "the chain ran but the machine is still up (power-off failed)",
            ))
        }
    }
}

fn fire(g: &Global, a: SysArgs) -> Result<(), CliError> {
    let (_, cfg) = load_config(g)?;
    let cfg = cfg.unwrap_or_default();
    let chain = chain_of(&cfg, &a);
    print_event(
        g,
        &WatchEvent::Fire {
            cause: "manual".into(),
        },
    );
    chain.run(g.dry_run, |r| {
        print_event(g, &WatchEvent::Action(r.clone()))
    });
    Ok(())
}

fn udev_rule(g: &Global, a: UdevRuleArgs) -> Result<(), CliError> {
    // Without --token the armed configuration gives both the token and (without --on) the event.
    let (token, armed_trigger) = match a.token {
        Some(t) => (t, Trigger::Remove),
        None => load_config(g)?
            .1
            .and_then(|c| Some((c.token?, c.trigger)))
            .ok_or_else(|| {
                CliError::usage_msg("no token given and none armed")
                    .with_hint("pass --token VID:PID:SERIAL")
            })?,
    };
    let trigger = a.trigger.map_or(armed_trigger, Trigger::from);
    let spec: TokenSpec = token.parse().usage()?;
    let rule = mv_guard::udev::kill_switch_rule_on(
        &spec,
        trigger,
        &a.binary,
        &g.root.display().to_string(),
    );
    match a.out {
        None => print!("{rule}"),
        Some(p) if g.dry_run => g.say(format!("would write {}", p.display())),
        Some(p) => {
            if mv_core::fsutil::write_public(&p, rule.as_bytes())? {
                g.say(format!(
                    "wrote {}; now run: udevadm control --reload",
                    p.display()
                ));
            } else {
                g.say(format!("{}: unchanged", p.display()));
            }
        }
    }
    Ok(())
}

fn emit(a: EmitArgs) -> Result<(), CliError> {
    let (vid, pid) = a
        .product
        .split_once(':')
        .and_then(|(v, p)| {
            Some((
                u16::from_str_radix(v, 16).ok()?,
                u16::from_str_radix(p, 16).ok()?,
            ))
        })
        .ok_or_else(|| CliError::usage_msg("--product is VID:PID in hex"))?;
    // In our own namespace the event would reach udevd and every other listener: only ever
    // into another namespace, made for the purpose (the watcher's, under `unshare -n`).
    let target = std::fs::read_link(&a.netns).ok();
    if target.is_none() || target == std::fs::read_link("/proc/self/ns/net").ok() {
        return Err(CliError::usage_msg(format!(
            "--netns {}: not another network namespace; refusing to emit where udevd would act on it",
            a.netns.display()
        ))
        .with_hint("start the watcher under `unshare -n` and pass --netns /proc/PID/ns/net"));
    }
    let mut ev = mv_guard::uevent::Uevent::usb(&a.action, &a.devpath, vid, pid, 0);
    ev.vars.remove("SEQNUM");
    // The time is taken just before the send: the benchmark measures from there to the first action.
    let sent = mv_guard::watch::send_in_netns(&a.netns, &ev.encode())
        .hint("sending uevents into a namespace needs root")?;
    let t = sent
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    println!("{t}");
    Ok(())
}
