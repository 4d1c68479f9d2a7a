//! `multiverse host`: udev rules, the passthrough check, vfio-pci binding.
//!
//! Parsing and printing only; the work is `mv_host`'s (and `mv_guard::kill_switch_rule` for the kill-switch
//! rule). `host check` exits 1 when it finds an error, so scripts can gate on it.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::layout::Tree;
use mv_host::{Level, Roots};
use std::path::PathBuf;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write the udev rules: /dev/vfio, /dev/kvm, vhost/vsock for the kvm group, and the kill switch
    Udev(UdevArgs),
    /// Check IOMMU, interrupt remapping, the kernel command line and IOMMU groups for passthrough
    Check(CheckArgs),
    /// vfio-pci binding
    #[command(subcommand)]
    Vfio(VfioCommand),
}

/// `host vfio` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VfioCommand {
    /// Hand a PCI device to vfio-pci: modprobe configuration, and with --now driver_override
    Bind(BindArgs),
}

/// `host udev`.
#[derive(Debug, clap::Args)]
pub struct UdevArgs {
    /// Folder of the rules files
    #[arg(long, value_name = "DIR", default_value = "/etc/udev/rules.d")]
    pub out: PathBuf,
    /// Group given the device nodes
    #[arg(long, default_value = "kvm")]
    pub group: String,
    /// Kill-switch token for the udev-only rule (default: the armed one, if any)
    #[arg(long)]
    pub token: Option<String>,
    /// Path of the multiverse binary in the kill-switch rule
    #[arg(long, default_value = "/usr/local/bin/multiverse")]
    pub binary: String,
}

/// System roots.
#[derive(Debug, clap::Args)]
pub struct RootArgs {
    /// sysfs root
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sys: PathBuf,
    /// procfs root
    #[arg(long = "proc", value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

/// `host check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A PCI device meant for passthrough (repeatable)
    #[arg(long = "device", value_name = "PCI_ADDR")]
    pub devices: Vec<String>,
    #[command(flatten)]
    pub roots: RootArgs,
}

/// `host vfio bind`.
#[derive(Debug, clap::Args)]
pub struct BindArgs {
    /// The device, as `lspci -D` shows it (0000:01:00.0)
    pub addr: String,
    /// Folder holding modprobe.d
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub etc: PathBuf,
    /// Also bind it now (driver_override, unbind, drivers_probe)
    #[arg(long)]
    pub now: bool,
    /// sysfs root
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sys: PathBuf,
}

/// Runs the command.
pub fn run(g: &Global, c: Command) -> Result<(), CliError> {
    match c {
        Command::Udev(a) => udev(g, a),
        Command::Check(a) => check(g, a),
        Command::Vfio(VfioCommand::Bind(a)) => bind(g, a),
    }
}

fn write(g: &Global, path: PathBuf, text: &str) -> Result<(), CliError> {
    if g.dry_run {
        g.say(format!("would write {}:\n{text}", path.display()));
    } else if mv_core::fsutil::write_public(&path, text.as_bytes())? {
        g.say(format!("wrote {}", path.display()));
    } else {
        g.say(format!("{}: unchanged", path.display()));
    }
    Ok(())
}

fn udev(g: &Global, a: UdevArgs) -> Result<(), CliError> {
    let valid_group = !a.group.is_empty()
        && a.group
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid_group {
        return Err(CliError::usage_msg(format!(
            "--group `{}` is not a group name",
            a.group
        )));
    }
    write(
        g,
        a.out.join(mv_host::HOST_RULES_FILE),
        &mv_host::host_rules(&a.group),
    )?;
    let token = match a.token {
        Some(t) => Some(t),
        None => mv_guard::GuardConfig::load(&Tree::new(&g.root).guard_config())
            .ok()
            .flatten()
            .filter(|c| c.armed)
            .and_then(|c| c.token),
    };
    match token {
        Some(t) => {
            let spec: mv_guard::token::TokenSpec = t
                .parse()
                .usage()
                .hint("a token is SERIAL or VID:PID[:SERIAL]")?;
            let rule = mv_guard::kill_switch_rule(&spec, &a.binary, &g.root.display().to_string());
            write(g, a.out.join("85-multiverse-killswitch.rules"), &rule)?;
        }
        None => g.say("no token given or armed: no kill-switch rule written"),
    }
    if !g.dry_run {
        g.say("reload with: udevadm control --reload && udevadm trigger");
    }
    Ok(())
}

fn check(g: &Global, a: CheckArgs) -> Result<(), CliError> {
    for d in &a.devices {
        mv_host::PciAddress::parse_lspci(d).usage()?;
    }
    let devices: Vec<String> = a
        .devices
        .iter()
        .filter_map(|d| mv_host::PciAddress::parse_lspci(d).ok())
        .map(|d| d.to_string())
        .collect();
    let roots = Roots {
        sys: a.roots.sys,
        proc_root: a.roots.proc_root,
    };
    let report = mv_host::check(&roots, &devices);
    if g.json {
        crate::global::print_json(&report)?;
    } else {
        for f in &report.findings {
            let tag = match f.level {
                Level::Ok => "ok   ",
                Level::Warn => "warn ",
                Level::Error => "ERROR",
            };
            println!("{tag} {}", f.message);
            if let Some(fix) = &f.fix {
                println!("      fix: {fix}");
            }
        }
        if !report.groups.is_empty() && g.verbose > 0 {
            for (id, devs) in &report.groups {
                for d in devs {
                    println!(
                        "group {id:>3}: {} {} {} {}",
                        d.addr,
                        d.id,
                        d.class,
                        d.driver.as_deref().unwrap_or("-")
                    );
                }
            }
        }
    }
    if report.worst() == Level::Error {
        return Err(
            CliError::failure_msg("the host is not ready for passthrough").with_hint(
                "fix the ERROR lines above, reboot, and run `multiverse host check` again",
            ),
        );
    }
    Ok(())
}

fn bind(g: &Global, a: BindArgs) -> Result<(), CliError> {
    let addr = mv_host::PciAddress::parse_lspci(&a.addr).usage()?;
    let plan = mv_host::vfio_plan(&a.sys, &a.etc, addr)
        .usage()
        .hint("list devices with `lspci -D`")?;
    if g.dry_run {
        if plan.config_changes {
            g.say(format!(
                "would write {}:\n{}",
                plan.config.0.display(),
                plan.config.1
            ));
        } else {
            g.say(format!("{}: unchanged", plan.config.0.display()));
        }
        if a.now {
            for (p, v) in &plan.writes {
                g.say(format!("would run: echo {v} > {}", p.display()));
            }
        }
        return Ok(());
    }
    if plan.write_config()? {
        g.say(format!(
            "wrote {} ({} for vfio-pci); rebuild the initramfs (update-initramfs -u / mkinitfs) to apply at boot",
            plan.config.0.display(),
            plan.id
        ));
    } else {
        g.say(format!("{}: unchanged", plan.config.0.display()));
    }
    if a.now {
        if plan.writes.is_empty() {
            g.say(format!("{addr} is bound to vfio-pci already; unchanged"));
        } else {
            plan.apply_now()
                .hint("binding now needs root and the vfio-pci module loaded")?;
            g.say(format!("{addr} is now bound to vfio-pci"));
        }
    }
    Ok(())
}
