//! The arguments of `multiverse guard` (clap types only; the commands are in `key` and `switch`).

use mv_guard::container::KdfParams;
use mv_guard::token::Trigger;
use std::path::PathBuf;

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
    /// The chain's memory fill, run by the chain itself as a child process
    #[command(hide = true, name = "__fill-memory")]
    FillMemory(FillMemoryArgs),
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

/// `guard __fill-memory` (hidden; the chain starts it).
#[derive(Debug, clap::Args)]
pub struct FillMemoryArgs {
    /// procfs root (meminfo, zoneinfo)
    #[arg(long = "proc", value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// MiB left free on top of the kernel's reserve
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    pub reserve_mib: u64,
    /// Lower min_free_kbytes, watermark_scale_factor and lowmem_reserve_ratio for the fill
    /// (restored after), so it reaches nearly every free page
    #[arg(long)]
    pub lower_watermarks: bool,
    /// Write at most this many MiB (tests)
    #[arg(long, value_name = "MIB")]
    pub limit_mib: Option<u64>,
}
