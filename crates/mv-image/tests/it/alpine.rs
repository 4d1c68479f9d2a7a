//! `image build alpine` cannot run here (no Alpine mirror is reachable): a recording runner plays
//! apk.static, mke2fs, sfdisk, dd, grub-mkimage and qemu-img, and the test asserts the exact
//! command lines, the files the builder writes into the root, and the atomic result (image and
//! manifest in `images/`, no build folder left). A failing step leaves nothing in `images/`.

// The recording runner is test code outside #[test] functions.
#![allow(clippy::unwrap_used)]

use mv_image::{build, BuildOptions, BuildProgress, ImageError, Os, RunOutput, Runner};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Records command lines and creates the files each tool would.
struct Fake {
    calls: RefCell<Vec<(Vec<String>, Option<String>)>>,
    fail: Option<&'static str>,
}

impl Runner for Fake {
    fn run(&self, argv: &[String], stdin: Option<&str>) -> std::io::Result<RunOutput> {
        self.calls
            .borrow_mut()
            .push((argv.to_vec(), stdin.map(str::to_string)));
        if Some(argv[0].as_str()) == self.fail {
            return Ok(RunOutput {
                success: false,
                stderr: "dd: error writing 'disk.raw': No space left on device\n".into(),
            });
        }
        let arg = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .map(|i| PathBuf::from(&argv[i + 1]))
        };
        match argv[0].as_str() {
            "apk.static" => {
                let root = arg("--root").unwrap();
                std::fs::create_dir_all(root.join("lib/apk/db")).unwrap();
                std::fs::write(
                    root.join("lib/apk/db/installed"),
                    "C:Q1x\nP:alpine-base\nV:3.20.3-r0\n\nC:Q1y\nP:linux-virt\nV:6.6.58-r0\n\n",
                )
                .unwrap();
                std::fs::create_dir_all(root.join("etc")).unwrap();
                std::fs::write(root.join("etc/inittab"), "::sysinit:/sbin/openrc sysinit\n")
                    .unwrap();
            }
            "grub-mkimage" => std::fs::write(arg("-o").unwrap(), vec![0u8; 40_000]).unwrap(),
            "mke2fs" => std::fs::write(&argv[argv.len() - 2], b"ext4").unwrap(),
            "qemu-img" if argv[1] == "convert" => {
                std::fs::write(&argv[argv.len() - 1], b"QFI\xfb fake").unwrap()
            }
            _ => {}
        }
        Ok(RunOutput {
            success: true,
            stderr: String::new(),
        })
    }
    fn has_tool(&self, _tool: &str) -> bool {
        true
    }
}

fn opts(images: &Path) -> BuildOptions {
    let mut o = BuildOptions::new(Os::Alpine, images);
    o.size = 1 << 30;
    o
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn alpine_exact_commands_and_atomic_result() {
    let t = tempfile::tempdir().unwrap();
    let images = t.path().join("images");
    let o = opts(&images);
    let fake = Fake {
        calls: RefCell::new(Vec::new()),
        fail: None,
    };
    let progress = RefCell::new(Vec::new());
    let built = build(&o, &fake, &|p| progress.borrow_mut().push(p)).unwrap();
    let calls = fake.calls.into_inner();
    // Every phase once, in order, then the end.
    let phases: Vec<BuildProgress> = (0..mv_image::PHASES.len())
        .map(BuildProgress::Phase)
        .chain([BuildProgress::Finish])
        .collect();
    assert_eq!(progress.into_inner(), phases);
    let work = images.join(format!(".build-alpine.{}", std::process::id()));
    let w = |p: &str| work.join(p).display().to_string();
    let cache = images.join(".cache/alpine-v3.20-x86_64");
    let c = |p: &str| cache.join(p).display().to_string();

    // The fs UUID and the disk id are random: read them back, then compare everything exactly.
    let uuid = calls[1].0[calls[1].0.iter().position(|a| a == "-U").unwrap() + 1].clone();
    let sfdisk_in = calls[2].1.clone().unwrap();
    let disk_id = sfdisk_in
        .lines()
        .find_map(|l| l.strip_prefix("label-id: 0x"))
        .unwrap()
        .to_string();

    let mut apk = strs(&["apk.static", "--arch", "x86_64", "--root"]);
    apk.push(w("rootfs"));
    apk.extend(strs(&["--initdb", "--keys-dir"]));
    apk.push(c("keys"));
    apk.push("--cache-dir".into());
    apk.push(c("apk"));
    apk.extend(strs(&[
        "--repository",
        "https://dl-cdn.alpinelinux.org/alpine/v3.20/main",
        "--repository",
        "https://dl-cdn.alpinelinux.org/alpine/v3.20/community",
        "--update-cache",
        "--no-progress",
        "add",
        "alpine-base",
        "ca-certificates",
        "dnsmasq",
        "e2fsprogs",
        "iproute2",
        "linux-virt",
        "mkinitfs",
        "nftables",
        "openssh",
        "tor",
        "wireguard-tools",
    ]));
    let expected: Vec<Vec<String>> = vec![
        apk,
        vec![
            "mke2fs".into(),
            "-q".into(),
            "-F".into(),
            "-t".into(),
            "ext4".into(),
            "-O".into(),
            "^metadata_csum_seed,^orphan_file".into(),
            "-L".into(),
            "mvroot".into(),
            "-U".into(),
            uuid,
            "-E".into(),
            "root_owner=0:0".into(),
            "-d".into(),
            w("rootfs"),
            w("root.ext4"),
            "1047552k".into(),
        ],
        strs(&[
            "sfdisk",
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            &w("disk.raw"),
        ]),
        strs(&[
            "dd",
            &format!("if={}", w("root.ext4")),
            &format!("of={}", w("disk.raw")),
            "bs=1M",
            "seek=1",
            "conv=notrunc,sparse",
            "status=none",
        ]),
        strs(&[
            "grub-mkimage",
            "-O",
            "i386-pc",
            "-d",
            "/usr/lib/grub/i386-pc",
            "-o",
            &w("core.img"),
            "-p",
            "(hd0,msdos1)/boot/grub",
            "biosdisk",
            "part_msdos",
            "ext2",
            "normal",
            "configfile",
            "linux",
            "linux16",
            "boot",
            "echo",
            "test",
            "serial",
            "terminal",
        ]),
        strs(&[
            "dd",
            "if=/usr/lib/grub/i386-pc/boot.img",
            &format!("of={}", w("disk.raw")),
            "bs=440",
            "count=1",
            "conv=notrunc",
            "status=none",
        ]),
        strs(&[
            "dd",
            &format!("if={}", w("core.img")),
            &format!("of={}", w("disk.raw")),
            "bs=512",
            "seek=1",
            "conv=notrunc",
            "status=none",
        ]),
        strs(&[
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &w("disk.raw"),
            &w("image.qcow2"),
        ]),
        strs(&["qemu-img", "check", "-q", "-f", "qcow2", &w("image.qcow2")]),
    ];
    let argvs: Vec<Vec<String>> = calls.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(argvs, expected);
    assert_eq!(
        sfdisk_in,
        format!(
            "label: dos\nlabel-id: 0x{disk_id}\nunit: sectors\n\nstart=2048, type=83, bootable\n"
        )
    );

    // The result: image and manifest in images/, nothing else but the cache.
    assert_eq!(built.image, images.join("alpine.qcow2"));
    assert_eq!(std::fs::read(&built.image).unwrap(), b"QFI\xfb fake");
    let m = &built.manifest;
    assert_eq!(m.os, "alpine");
    assert_eq!(m.release, "v3.20");
    assert_eq!(m.packages["linux-virt"], "6.6.58-r0");
    assert_eq!(
        m.sha256,
        mv_core::fsutil::sha256_file(&built.image).unwrap()
    );
    assert_eq!(
        m.cmdline,
        format!("root=PARTUUID={disk_id}-01 rootfstype=ext4 rw console=ttyS0,115200n8 modules=virtio_pci,virtio_blk,ext4 quiet")
    );
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".cache", "alpine.manifest.json", "alpine.qcow2"]);
    assert!(mv_image::is_current(&o));
}

#[test]
fn a_failing_step_names_itself_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let images = t.path().join("images");
    let fake = Fake {
        calls: RefCell::new(Vec::new()),
        fail: Some("dd"),
    };
    let progress = RefCell::new(Vec::new());
    let err = build(&opts(&images), &fake, &|p| progress.borrow_mut().push(p)).unwrap_err();
    // The disk phase was the last one started; no end is announced after an error.
    assert_eq!(progress.into_inner().last(), Some(&BuildProgress::Phase(3)));
    assert_eq!(
        err.to_string(),
        "step dd (root filesystem into the disk) failed: dd: error writing 'disk.raw': No space left on device"
    );
    assert!(matches!(err, ImageError::Step { .. }));
    let names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [".cache"]);
}

#[test]
fn an_existing_image_is_kept_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let images = t.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("alpine.qcow2"), b"good").unwrap();
    let fake = Fake {
        calls: RefCell::new(Vec::new()),
        fail: None,
    };
    let err = build(&opts(&images), &fake, &|_| {}).unwrap_err();
    assert!(err.is_usage(), "{err}");
    assert!(fake.calls.borrow().is_empty());
    // Forced, but the build fails: the good image stays.
    let failing = Fake {
        calls: RefCell::new(Vec::new()),
        fail: Some("qemu-img"),
    };
    let mut o = opts(&images);
    o.force = true;
    build(&o, &failing, &|_| {}).unwrap_err();
    assert_eq!(std::fs::read(images.join("alpine.qcow2")).unwrap(), b"good");
    assert!(!images.join("alpine.manifest.json").exists());
}
