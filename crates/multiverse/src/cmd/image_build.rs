//! `multiverse image build OS`: arguments of the image builder ([`mv_image`]), its progress bar
//! (drawn here from the builder's [`BuildProgress`]), the report line and exit codes (2 for an
//! unknown OS, a bad option or an existing image without `--force`; 1 for a failed step, named in
//! the one error line).
//!
//! What this is not: the builder. Everything it does is in `mv-image`; see docs/images.md.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_image::{BuildOptions, BuildProgress, ImageError, Kernel, Os};
use mv_machines::Tree;
use std::path::PathBuf;

/// Arguments of `image build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The distribution: debian (tested) or alpine (untested here, see docs/images.md)
    #[arg(value_name = "OS")]
    os: String,
    /// Release (default: bookworm for debian, v3.20 for alpine)
    #[arg(long)]
    release: Option<String>,
    /// CPU architecture (only x86_64 today)
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Virtual disk size (the qcow2 only stores what is used)
    #[arg(long, default_value = "4G")]
    size: String,
    /// Image name: images/NAME.qcow2 (default: the OS, which is what machines with that os use)
    #[arg(long)]
    name: Option<String>,
    /// Debian kernel: cloud (virtio only, boots faster) or generic (every driver)
    #[arg(long, default_value = "cloud", value_name = "cloud|generic")]
    kernel: String,
    /// More packages (comma-separated or repeated), on top of the default list of the
    /// provisioning recipes of every machine the image boots (debian: openssh-server and -client,
    /// gnupg, pass, tmux, ifupdown, isc-dhcp-client, ca-certificates, nftables, dnsmasq, tor,
    /// wireguard-tools, openvpn)
    #[arg(long, value_delimiter = ',', value_name = "PKG,...")]
    include: Vec<String>,
    /// Leave out the default package list (only what boots, plus --include)
    #[arg(long)]
    no_default_packages: bool,
    /// Package mirror (default: deb.debian.org / dl-cdn.alpinelinux.org)
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Keep downloaded packages here for the next build (default: images/.cache/OS-RELEASE-ARCH)
    #[arg(long, env = "MULTIVERSE_IMAGE_CACHE", value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Replace an existing image of that name (disks that are overlays on it must be recreated)
    #[arg(long)]
    force: bool,
    /// Do nothing if the image is intact and was built with these options (same build key in
    /// its manifest, same SHA-256); otherwise build it, replacing a stale one
    #[arg(long, conflicts_with = "force")]
    if_needed: bool,
}

/// The options `a` describes, for the tree at `root`.
pub fn options(a: &BuildArgs, root: &std::path::Path) -> Result<BuildOptions, ImageError> {
    let os = Os::parse(&a.os)?;
    let images = Tree::new(root).images_dir();
    let mut o = BuildOptions::new(os, &images);
    if let Some(r) = &a.release {
        o.release = r.clone();
    }
    o.arch = a.arch.clone();
    o.size = mv_image::parse_size(&a.size)?;
    if let Some(n) = &a.name {
        o.name = n.clone();
    }
    o.kernel = Kernel::parse(&a.kernel)?;
    if a.no_default_packages {
        o.include.clear();
    }
    o.include
        .extend(a.include.iter().map(|s| s.trim().to_string()));
    if let Some(m) = &a.mirror {
        o.mirror = m.clone();
    }
    o.cache = match &a.cache {
        Some(c) => c.clone(),
        None => mv_image::default_cache(&images, os, &o.release, &o.arch),
    };
    o.force = a.force || a.if_needed;
    Ok(o)
}

/// `multiverse image build`.
pub fn build(g: &Global, a: BuildArgs) -> Result<(), CliError> {
    let o = options(&a, &g.root).usage()?;
    if a.if_needed && mv_image::is_current(&o) {
        g.say(format!(
            "unchanged: {} is intact and built with these options",
            o.image_path().display()
        ));
        return Ok(());
    }
    if g.dry_run {
        g.say(format!(
            "would build {} {} ({}, {} kernel, {} MiB) as {}, packages cached in {}",
            o.os.as_str(),
            o.release,
            o.arch,
            o.kernel.as_str(),
            o.size >> 20,
            o.image_path().display(),
            o.cache.display()
        ));
        return Ok(());
    }
    let bar = phase_bar(g.quiet || g.json);
    let res = mv_image::build(&o, &mv_image::SystemRunner, &|p| match p {
        BuildProgress::Phase(i) => {
            bar.set_position(i as u64);
            bar.set_message(p.name());
        }
        BuildProgress::Finish => bar.finish_and_clear(),
    });
    // Also after an error: the bar is gone before the error line.
    bar.finish_and_clear();
    let built = match res {
        Ok(b) => b,
        Err(e @ ImageError::Exists { .. }) => {
            return Err(e)
                .usage()
                .hint("pick another --name, or --force to replace it (machines whose disks are overlays on it must be recreated)")
        }
        Err(e @ ImageError::MissingTool { .. }) => {
            return Err(e).hint("install the build tools: scripts/install-deps.sh")
        }
        Err(e) if e.is_usage() => return Err(e).usage(),
        Err(e) => return Err(e.into()),
    };
    if g.json {
        crate::global::print_json(&built.manifest)?;
        return Ok(());
    }
    let size = std::fs::metadata(&built.image)
        .map(|m| m.len())
        .unwrap_or(0);
    g.say(format!(
        "built {} in {} s: {} packages, {} MiB on disk ({} MiB virtual), manifest {}",
        built.image.display(),
        built.manifest.build_seconds,
        built.manifest.packages.len(),
        size >> 20,
        built.manifest.size >> 20,
        built.manifest_path.display()
    ));
    Ok(())
}

/// A bar over the build's phases ([`mv_image::PHASES`]) with the elapsed time ticking, on stderr;
/// `hidden` (`--quiet`, `--json`) draws nothing.
fn phase_bar(hidden: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(mv_image::PHASES.len() as u64),
        if hidden {
            indicatif::ProgressDrawTarget::hidden()
        } else {
            indicatif::ProgressDrawTarget::stderr()
        },
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:20}] {pos}/{len} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
