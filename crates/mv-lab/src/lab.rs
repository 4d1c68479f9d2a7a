//! [`Lab`]: one QEMU process playing a bare-metal host, and [`LabSpec`]: what it is given.
//!
//! The QEMU command line (see [`LabSpec::qemu_args`]): `-accel tcg -cpu max`, `-machine q35`
//! (`,kernel-irqchip=split` plus `-device intel-iommu` for a vIOMMU), `-nodefaults`, no display,
//! the serial console on a unix socket (QEMU waits for us to connect, so no byte is lost), QMP on
//! another. The lab image boots by direct kernel boot with its root on the first virtio disk
//! (`snapshot=on`: the cached image is never written); extra disks follow as `vdb`, `vdc`, …
//! (serials `mvlab-disk0`, …); USB sticks hang off one `qemu-xhci` controller; a host folder is
//! shared read-only over 9p (`-virtfs … security_model=none,readonly=on`, mount tag `host`) and
//! mounted on `/mnt/host`. An extra NIC is an `e1000e` with no backend: there is no network.

use crate::console::Console;
use crate::image::LabImage;
use crate::qmp::{Event, Qmp};
use crate::LabError;
use serde_json::{json, Value};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// OVMF's code (read-only flash).
pub(crate) const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// OVMF's variable store template, copied per lab.
pub(crate) const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// Where the shared host folder is mounted in the guest.
pub const HOST_MOUNT: &str = "/mnt/host";
/// The QEMU device id of the USB token, for QMP `device_del`.
pub const TOKEN_ID: &str = "token";
/// Default time limit of [`Lab::run`].
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Time limit of QMP commands (but `dump-guest-memory`).
pub const QMP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the lab boots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Boot {
    /// The cached lab image ([`crate::image::lab_image`]) by direct kernel boot; [`Lab::boot`]
    /// returns once its root shell answers on the console.
    #[default]
    LabImage,
    /// Another lab image (e.g. one with extra packages), the same way.
    Image(LabImage),
    /// An arbitrary disk (an installed host) under OVMF, as the first virtio disk, written to
    /// for real. [`Lab::boot`] returns as soon as QEMU runs; drive it with [`Lab::wait_for`],
    /// [`Lab::send`] and, once a root shell is on the console, [`Lab::attach_shell`]. Type
    /// nothing before the kernel runs: OVMF and the boot loader read the serial console too
    /// (a key press stops systemd-boot in its menu).
    Uefi {
        /// The disk (raw or qcow2, detected from its first bytes).
        disk: PathBuf,
    },
}

/// An extra virtio disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// A new sparse raw file of `size` bytes in the lab's folder (`disk<N>.raw`).
    Blank {
        /// Bytes.
        size: u64,
    },
    /// An existing file (raw or qcow2).
    File {
        /// The file.
        path: PathBuf,
        /// Writes go to a throw-away overlay (`snapshot=on`).
        snapshot: bool,
    },
}

/// An emulated USB stick (`usb-storage` on the `qemu-xhci` controller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbStick {
    /// QEMU device id (what `device_del` names).
    pub id: String,
    /// Its raw image, written to for real.
    pub image: PathBuf,
    /// USB serial number (QEMU's default when `None`).
    pub serial: Option<String>,
}

impl UsbStick {
    /// The token: device id [`TOKEN_ID`].
    pub fn token(image: impl Into<PathBuf>) -> UsbStick {
        UsbStick {
            id: TOKEN_ID.into(),
            image: image.into(),
            serial: None,
        }
    }
}

/// What a lab VM gets. `LabSpec::default()` is the lab image, 1 GiB, one vCPU, nothing else.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs (this machine has 2 cores, shared with everything else).
    pub cpus: u32,
    /// What boots.
    pub boot: Boot,
    /// Extra virtio disks, `vdb` onwards in this order.
    pub disks: Vec<Disk>,
    /// USB sticks, present at power-on.
    pub usb: Vec<UsbStick>,
    /// A vIOMMU: `-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on`, and
    /// `intel_iommu=on iommu=pt` on the lab image's kernel command line.
    pub iommu: bool,
    /// An extra emulated NIC (`e1000e`, no backend).
    pub nic: bool,
    /// A host folder shared read-only, mounted on [`HOST_MOUNT`] (lab images only).
    pub shared: Option<PathBuf>,
    /// Extra kernel command line arguments (lab images only).
    pub append: Vec<String>,
    /// Where disks, the console log, QEMU's stderr, OVMF variables and sockets go. Kept when
    /// given (so a test can boot an installed disk again); a temporary folder removed on drop
    /// otherwise. Sockets live here: keep the path short.
    pub dir: Option<PathBuf>,
    /// `-no-shutdown`: a guest power-off stops the VM instead of ending QEMU, so QMP still
    /// answers (e.g. `dump-guest-memory` after the kill switch's power-off).
    pub no_shutdown: bool,
    /// How long [`Lab::boot`] waits for the lab image's shell.
    pub boot_timeout: Duration,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            memory_mib: 1024,
            cpus: 1,
            boot: Boot::LabImage,
            disks: Vec::new(),
            usb: Vec::new(),
            iommu: false,
            nic: false,
            shared: None,
            append: Vec::new(),
            dir: None,
            no_shutdown: false,
            boot_timeout: Duration::from_secs(300),
        }
    }
}

impl LabSpec {
    /// Adds a blank disk of `size` bytes.
    pub fn blank_disk(mut self, size: u64) -> Self {
        self.disks.push(Disk::Blank { size });
        self
    }

    /// Adds the USB token with `image`.
    pub fn token(mut self, image: impl Into<PathBuf>) -> Self {
        self.usb.push(UsbStick::token(image));
        self
    }

    /// Shares `folder` read-only on [`HOST_MOUNT`].
    pub fn share(mut self, folder: impl Into<PathBuf>) -> Self {
        self.shared = Some(folder.into());
        self
    }

    /// The QEMU arguments (after the program name) for this spec, with `dir` the lab's folder,
    /// `image` the lab image (for [`Boot::LabImage`]) and `disks` the extra disks' files.
    pub fn qemu_args(
        &self,
        dir: &Path,
        image: Option<&LabImage>,
        disks: &[PathBuf],
    ) -> Vec<String> {
        let d = |name: &str| dir.join(name).display().to_string();
        let mut a: Vec<String> = vec![
            "-name".into(),
            "mv-lab".into(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-accel".into(),
            "tcg".into(),
            "-cpu".into(),
            "max".into(),
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-machine".into(),
            if self.iommu {
                "q35,kernel-irqchip=split".into()
            } else {
                "q35".into()
            },
        ];
        if self.iommu {
            // Before every other PCI device.
            a.extend(["-device".into(), "intel-iommu,intremap=on".into()]);
        }
        a.extend([
            "-chardev".into(),
            format!(
                "socket,id=ser0,path={},server=on,wait=on",
                d("console.sock")
            ),
            "-serial".into(),
            "chardev:ser0".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", d("qmp.sock")),
        ]);
        if self.no_shutdown {
            a.push("-no-shutdown".into());
        }
        match (&self.boot, image) {
            (Boot::Uefi { disk }, _) => {
                a.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", d("OVMF_VARS.fd")),
                    "-drive".into(),
                    format!(
                        "file={},format={},if=none,id=boot,cache=unsafe",
                        disk.display(),
                        disk_format(disk)
                    ),
                    "-device".into(),
                    "virtio-blk-pci,drive=boot,bootindex=0".into(),
                ]);
            }
            (_, Some(img)) => {
                let mut cmdline = img.cmdline.clone();
                if self.iommu {
                    cmdline.push_str(" intel_iommu=on iommu=pt");
                }
                for extra in &self.append {
                    cmdline.push(' ');
                    cmdline.push_str(extra);
                }
                a.extend([
                    "-kernel".into(),
                    img.kernel.display().to_string(),
                    "-initrd".into(),
                    img.initrd.display().to_string(),
                    "-append".into(),
                    cmdline,
                    "-drive".into(),
                    format!(
                        "file={},format=raw,if=none,id=root,snapshot=on,cache=unsafe",
                        img.root.display()
                    ),
                    "-device".into(),
                    "virtio-blk-pci,drive=root,serial=mvlab-root".into(),
                ]);
            }
            (_, None) => {}
        }
        for (i, (disk, path)) in self.disks.iter().zip(disks).enumerate() {
            let snapshot = matches!(disk, Disk::File { snapshot: true, .. });
            a.extend([
                "-drive".into(),
                format!(
                    "file={},format={},if=none,id=disk{i},cache=unsafe{}",
                    path.display(),
                    disk_format(path),
                    if snapshot { ",snapshot=on" } else { "" }
                ),
                "-device".into(),
                format!("virtio-blk-pci,drive=disk{i},serial=mvlab-disk{i}"),
            ]);
        }
        if !self.usb.is_empty() {
            a.extend(["-device".into(), "qemu-xhci,id=xhci".into()]);
        }
        for (i, stick) in self.usb.iter().enumerate() {
            a.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,if=none,id=usbdrive{i},cache=unsafe",
                    stick.image.display()
                ),
                "-device".into(),
                format!(
                    "usb-storage,bus=xhci.0,drive=usbdrive{i},id={},removable=on{}",
                    stick.id,
                    stick
                        .serial
                        .as_ref()
                        .map(|s| format!(",serial={s}"))
                        .unwrap_or_default()
                ),
            ]);
        }
        if self.nic {
            a.extend([
                "-device".into(),
                "e1000e,id=nic1,mac=52:54:00:6d:76:01".into(),
            ]);
        }
        if let Some(folder) = &self.shared {
            a.extend([
                "-virtfs".into(),
                format!(
                    "local,path={},mount_tag=host,security_model=none,readonly=on,id=host",
                    folder.display()
                ),
            ]);
        }
        a
    }
}

/// "qcow2" when the file starts with qcow2's magic, else "raw".
fn disk_format(path: &Path) -> &'static str {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let qcow = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"QFI\xfb";
    if qcow {
        "qcow2"
    } else {
        "raw"
    }
}

/// What a command on the console printed, and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its exit status.
    pub status: i32,
    /// Its standard output and standard error, interleaved, with `\n` line ends.
    pub stdout: String,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// The lab's folder: kept when the spec named it, removed on drop otherwise.
enum Folder {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl Folder {
    fn path(&self) -> &Path {
        match self {
            Folder::Kept(p) => p,
            Folder::Temp(t) => t.path(),
        }
    }
}

/// A running lab VM. Dropping it kills QEMU (by its PID) and removes a temporary folder.
pub struct Lab {
    child: Child,
    console: Console,
    qmp: Qmp,
    disks: Vec<PathBuf>,
    started: Instant,
    shell_after: Option<Duration>,
    seq: AtomicU64,
    // Last: dropped after QEMU is killed.
    folder: Folder,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("pid", &self.child.id())
            .field("dir", &self.folder.path())
            .finish_non_exhaustive()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `path` to accept a connection while QEMU runs.
fn connect(
    child: &mut Child,
    path: &Path,
    what: &str,
    stderr: &Path,
) -> Result<UnixStream, LabError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = UnixStream::connect(path) {
            return Ok(s);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::QemuExited {
                status: status.to_string(),
                stderr: std::fs::read_to_string(stderr).unwrap_or_default(),
                console: String::new(),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Timeout {
                what: format!("QEMU's {what} socket {}", path.display()),
                seconds: 30.0,
                console: String::new(),
                log: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Lab {
    /// Starts QEMU as `spec` says. For a lab image, waits for its root shell (at most
    /// `spec.boot_timeout`), sets it up for [`Lab::run`] and mounts the shared folder.
    pub fn boot(spec: LabSpec) -> Result<Lab, LabError> {
        let image = match &spec.boot {
            Boot::LabImage => Some(crate::image::lab_image()?),
            Boot::Image(i) => Some(i.clone()),
            Boot::Uefi { .. } => None,
        };
        let folder = match &spec.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(LabError::io("create the lab folder"))?;
                Folder::Kept(d.clone())
            }
            None => Folder::Temp(
                tempfile::Builder::new()
                    .prefix("mv-lab.")
                    .tempdir()
                    .map_err(LabError::io("create the lab folder"))?,
            ),
        };
        let dir = folder.path().to_path_buf();
        let mut disks = Vec::new();
        for (i, disk) in spec.disks.iter().enumerate() {
            match disk {
                Disk::Blank { size } => {
                    let p = dir.join(format!("disk{i}.raw"));
                    let _ = std::fs::remove_file(&p);
                    std::fs::File::create(&p)
                        .and_then(|f| f.set_len(*size))
                        .map_err(LabError::io("create a blank disk"))?;
                    disks.push(p);
                }
                Disk::File { path, .. } => disks.push(path.clone()),
            }
        }
        if let Boot::Uefi { disk } = &spec.boot {
            for (what, p) in [("OVMF", Path::new(OVMF_CODE)), ("the boot disk", disk)] {
                if !p.is_file() {
                    return Err(LabError::Missing {
                        what: what.into(),
                        path: p.to_path_buf(),
                    });
                }
            }
            let vars = dir.join("OVMF_VARS.fd");
            if !vars.exists() {
                std::fs::copy(OVMF_VARS, &vars).map_err(LabError::io("copy OVMF_VARS.fd"))?;
            }
        }
        for s in ["console.sock", "qmp.sock"] {
            let _ = std::fs::remove_file(dir.join(s));
        }
        let stderr_path = dir.join("qemu.stderr");
        let stderr =
            std::fs::File::create(&stderr_path).map_err(LabError::io("create qemu.stderr"))?;
        let args = spec.qemu_args(&dir, image.as_ref(), &disks);
        std::fs::write(dir.join("qemu.args"), args.join("\n") + "\n")
            .map_err(LabError::io("write qemu.args"))?;
        let started = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(LabError::io("start qemu-system-x86_64"))?;
        let serial = connect(
            &mut child,
            &dir.join("console.sock"),
            "console",
            &stderr_path,
        )?;
        let console = match Console::start(serial, &dir.join("console.log")) {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let qmp = connect(&mut child, &dir.join("qmp.sock"), "QMP", &stderr_path)
            .and_then(|s| Qmp::connect(s, QMP_TIMEOUT));
        let qmp = match qmp {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut lab = Lab {
            child,
            console,
            qmp,
            disks,
            started,
            shell_after: None,
            seq: AtomicU64::new(0),
            folder,
        };
        if image.is_some() {
            lab.attach_shell(spec.boot_timeout)?;
            if spec.shared.is_some() {
                lab.run_ok(&format!(
                    "mount -t 9p -o trans=virtio,version=9p2000.L,ro host {HOST_MOUNT}"
                ))?;
            }
        }
        Ok(lab)
    }

    /// Waits for a shell on the console (probing every second), then sets it up for [`Lab::run`]:
    /// no echo, no prompt, `TERM=dumb`, kernel messages off the console (`dmesg -n 1`), and
    /// waits for udev to finish the devices present at boot (`udevadm settle`: the lab image's
    /// shell starts while udev still works through them). Called by
    /// [`Lab::boot`] for lab images; call it after logging in on a booted disk.
    pub fn attach_shell(&mut self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            // The typed text never contains the marker it prints (the backslash is not echoed
            // back in the output), and it has no quote: `login` flushes its input after the
            // password, and a probe typed ahead can lose its head there; a fragment holding one
            // quote left bash in a continuation prompt that no later probe could close.
            self.console.send(b"echo =MV\\READY=\n")?;
            if self
                .console
                .wait_for(b"=MVREADY=", Duration::from_secs(1))
                .is_some()
            {
                break;
            }
            self.check_alive("a shell on the console")?;
            if Instant::now() >= deadline {
                return Err(self.timeout("a shell on the console", timeout));
            }
        }
        self.console.send(
            b"stty -echo; PS1=; PS2=; PROMPT_COMMAND=; export TERM=dumb; unset HISTFILE; dmesg -n 1; udevadm settle --timeout=240 >/dev/null 2>&1; printf '=MV%s=\\n' SETUP\n",
        )?;
        let limit = Duration::from_secs(300);
        if self.console.wait_for(b"=MVSETUP=", limit).is_none() {
            return Err(self.timeout("the shell's setup (udevadm settle)", limit));
        }
        self.shell_after = Some(self.started.elapsed());
        Ok(())
    }

    fn check_alive(&mut self, what: &str) -> Result<(), LabError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(self.exited(status, what));
        }
        Ok(())
    }

    fn exited(&self, status: ExitStatus, _what: &str) -> LabError {
        LabError::QemuExited {
            status: status.to_string(),
            stderr: std::fs::read_to_string(self.dir().join("qemu.stderr")).unwrap_or_default(),
            console: self.console.tail(30),
        }
    }

    fn timeout(&self, what: &str, after: Duration) -> LabError {
        LabError::Timeout {
            what: what.to_string(),
            seconds: after.as_secs_f64(),
            console: self.console.tail(30),
            log: self.console.log().display().to_string(),
        }
    }

    /// Runs `cmd` (any bash text, one line or many) in the guest's root shell, stdin from
    /// `/dev/null`, with [`RUN_TIMEOUT`].
    pub fn run(&self, cmd: &str) -> Result<Output, LabError> {
        self.run_timeout(cmd, RUN_TIMEOUT)
    }

    /// [`Lab::run`], failing with [`LabError::Failed`] unless it exits 0; returns its output.
    pub fn run_ok(&self, cmd: &str) -> Result<String, LabError> {
        let out = self.run(cmd)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(LabError::Failed {
                command: short(cmd),
                status: out.status,
                stdout: out.stdout,
            })
        }
    }

    /// [`Lab::run`] with its own time limit.
    ///
    /// How: the command travels base64-encoded, in lines of at most 1,000 characters (the
    /// terminal's line limit is 4,095), into `/tmp/.mvlab.cmd`; the shell prints a begin marker
    /// `=MVB<n>=`, runs it with `bash` (a syntax error is an exit status, not a hung console),
    /// then prints `=MVE<n>:<status>=`. Markers are built by `printf`, so the typed text never
    /// contains them. Processes the command leaves in the background keep writing to the console:
    /// redirect their output.
    pub fn run_timeout(&self, cmd: &str, timeout: Duration) -> Result<Output, LabError> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let b64 = base64(cmd.as_bytes());
        let mut typed = String::from(": >/tmp/.mvlab.cmd\n");
        for chunk in b64.as_bytes().chunks(1000) {
            typed.push_str("printf %s '");
            typed.push_str(&String::from_utf8_lossy(chunk));
            typed.push_str("' >>/tmp/.mvlab.cmd\n");
        }
        typed.push_str(&format!(
            "printf '=MV%s{n}=\\n' B; base64 -d /tmp/.mvlab.cmd >/tmp/.mvlab.sh; bash /tmp/.mvlab.sh </dev/null 2>&1; printf '=MV%s{n}:%d=\\n' E $?\n"
        ));
        self.console.send(typed.as_bytes())?;
        let deadline = Instant::now() + timeout;
        let begin = format!("=MVB{n}=");
        let what = format!("`{}` to finish", short(cmd));
        if self.console.wait_for(begin.as_bytes(), timeout).is_none() {
            return Err(self.timeout(&what, timeout));
        }
        let end = format!("=MVE{n}:");
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(body) = self.console.wait_for(end.as_bytes(), left) else {
            return Err(self.timeout(&what, timeout));
        };
        let Some(tail) = self.console.wait_for(b"=", Duration::from_secs(10)) else {
            return Err(self.timeout(&what, timeout));
        };
        let status: i32 = String::from_utf8_lossy(&tail[..tail.len() - 1])
            .trim()
            .parse()
            .map_err(|_| {
                LabError::Protocol(format!("bad exit status marker after `{}`", short(cmd)))
            })?;
        let body = &body[..body.len() - end.len()];
        let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
        let text = text.strip_prefix('\n').unwrap_or(&text).to_string();
        Ok(Output {
            status,
            stdout: text,
        })
    }

    /// Waits until `text` appears on the console after everything already consumed by earlier
    /// waits and commands; returns the console text from there up to the end of `text`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> Result<String, LabError> {
        match self.console.wait_for(text.as_bytes(), timeout) {
            Some(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            None => Err(self.timeout(&format!("{text:?} on the console"), timeout)),
        }
    }

    /// [`Lab::wait_for`], also returning the instant the match's last byte was read from the
    /// console: compare it with [`Lab::remove_token`]'s instant or an [`Event::at`] to time what
    /// the guest reports on its console (e.g. the kill switch's first step).
    pub fn wait_for_timed(
        &self,
        text: &str,
        timeout: Duration,
    ) -> Result<(String, Instant), LabError> {
        match self.console.wait_for_timed(text.as_bytes(), timeout) {
            Some((b, at)) => Ok((String::from_utf8_lossy(&b).into_owned(), at)),
            None => Err(self.timeout(&format!("{text:?} on the console"), timeout)),
        }
    }

    /// Types `text` on the console as is (add `\n` for Enter): a passphrase at an initramfs
    /// prompt, a login.
    pub fn send(&self, text: &str) -> Result<(), LabError> {
        self.console.send(text.as_bytes())
    }

    /// Runs a QMP command (`args`: `Value::Null` for none) with [`QMP_TIMEOUT`]; returns its
    /// `return` member.
    pub fn qmp(&self, execute: &str, args: Value) -> Result<Value, LabError> {
        self.qmp.execute(execute, args, QMP_TIMEOUT)
    }

    /// The QMP client itself (other time limits, every event).
    pub fn qmp_client(&self) -> &Qmp {
        &self.qmp
    }

    /// The oldest QMP event named `name` no earlier call returned, waiting up to `timeout`.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> Result<Event, LabError> {
        self.qmp
            .wait_event(name, timeout)
            .ok_or_else(|| self.timeout(&format!("QMP event {name}"), timeout))
    }

    /// Waits for QMP's `DEVICE_DELETED` event of the device `id` (a USB stick also sends one
    /// for its internal SCSI device, without a `device` member: that one is skipped).
    pub fn wait_device_deleted(&self, id: &str, timeout: Duration) -> Result<Event, LabError> {
        self.qmp
            .wait_event_matching("DEVICE_DELETED", |e| e.data["device"] == id, timeout)
            .ok_or_else(|| self.timeout(&format!("QMP DEVICE_DELETED of {id}"), timeout))
    }

    /// Every QMP event so far.
    pub fn events(&self) -> Vec<Event> {
        self.qmp.events()
    }

    /// Pulls the USB token out: QMP `device_del` of [`TOKEN_ID`]. Returns the instant just before
    /// the command was sent (QMP's `DEVICE_DELETED` event follows: [`Lab::wait_device_deleted`]).
    pub fn remove_token(&self) -> Result<Instant, LabError> {
        self.remove_usb(TOKEN_ID)
    }

    /// Pulls the USB stick with device id `id` out (QMP `device_del`).
    pub fn remove_usb(&self, id: &str) -> Result<Instant, LabError> {
        let at = Instant::now();
        self.qmp("device_del", json!({ "id": id }))?;
        Ok(at)
    }

    /// Plugs a USB stick in (QMP `blockdev-add` of its image, then `device_add`).
    pub fn add_usb(&self, stick: &UsbStick) -> Result<(), LabError> {
        let node = format!("usbnode-{}", stick.id);
        // A stick plugged in again: its node from the last `add_usb` outlives the device.
        let _ = self.qmp("blockdev-del", json!({ "node-name": node }));
        self.qmp(
            "blockdev-add",
            json!({
                "node-name": node,
                "driver": "raw",
                "file": { "driver": "file", "filename": stick.image.display().to_string() },
            }),
        )?;
        let mut dev = json!({
            "driver": "usb-storage",
            "id": stick.id,
            "drive": node,
            "bus": "xhci.0",
            "removable": true,
        });
        if let Some(s) = &stick.serial {
            dev["serial"] = json!(s);
        }
        self.qmp("device_add", dev)?;
        Ok(())
    }

    /// Writes the guest's RAM to `path` (QMP `dump-guest-memory`, ELF, no paging), waiting up to
    /// 10 minutes for it to finish.
    pub fn dump_memory(&self, path: &Path) -> Result<(), LabError> {
        self.qmp.execute(
            "dump-guest-memory",
            json!({ "paging": false, "protocol": format!("file:{}", path.display()) }),
            Duration::from_secs(600),
        )?;
        Ok(())
    }

    /// Pulls the plug: QMP `quit`, then waits for QEMU to exit (killed after 30 s).
    pub fn power_off(&mut self) -> Result<(), LabError> {
        let _ = self.qmp("quit", Value::Null);
        match self.wait_exit(Duration::from_secs(30)) {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(e)
            }
        }
    }

    /// Waits up to `timeout` for QEMU to exit by itself (a guest power-off without
    /// `no_shutdown`); returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(LabError::io("wait for QEMU"))?
            {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout("QEMU to exit", timeout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host file of extra disk `i` (in [`LabSpec::disks`] order).
    pub fn disk(&self, i: usize) -> &Path {
        &self.disks[i]
    }

    /// The lab's folder.
    pub fn dir(&self) -> &Path {
        self.folder.path()
    }

    /// The console log file (everything the guest printed).
    pub fn console_log(&self) -> &Path {
        self.console.log()
    }

    /// The console's last `n` lines.
    pub fn console_tail(&self, n: usize) -> String {
        self.console.tail(n)
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// From QEMU's start to the root shell answering (`None` before [`Lab::attach_shell`]).
    pub fn boot_time(&self) -> Option<Duration> {
        self.shell_after
    }
}

/// A command for an error message: its first 200 characters.
fn short(cmd: &str) -> String {
    let mut s: String = cmd.chars().take(200).collect();
    if s.len() < cmd.len() {
        s.push('…');
    }
    s
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether the file at `path` contains `needle` (read in 1 MiB blocks; for memory dumps).
pub fn file_contains(path: &Path, needle: &[u8]) -> std::io::Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let keep = needle.len().saturating_sub(1);
    let mut buf: Vec<u8> = Vec::with_capacity((1 << 20) + keep);
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut block)?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&block[..n]);
        if crate::console::find(&buf, needle).is_some() {
            return Ok(true);
        }
        let cut = buf.len().saturating_sub(keep);
        buf.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn file_contains_finds_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut data = vec![0u8; (1 << 20) - 3];
        data.extend_from_slice(b"MARKER");
        data.extend(vec![1u8; 100]);
        std::fs::write(&p, &data).unwrap();
        assert!(file_contains(&p, b"MARKER").unwrap());
        assert!(!file_contains(&p, b"MARKEX").unwrap());
    }

    #[test]
    fn qemu_command_line_has_every_device() {
        let spec = LabSpec {
            iommu: true,
            nic: true,
            ..LabSpec::default()
        }
        .blank_disk(1 << 30)
        .token("/t.img")
        .share("/srv/x");
        let img = LabImage {
            dir: "/c".into(),
            root: "/c/root.ext4".into(),
            kernel: "/c/vmlinuz".into(),
            initrd: "/c/initrd.img".into(),
            cmdline: "root=UUID=x".into(),
            key: "k".into(),
        };
        let a = spec
            .qemu_args(Path::new("/d"), Some(&img), &["/d/disk0.raw".into()])
            .join(" ");
        for want in [
            "-accel tcg -cpu max",
            "-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on",
            "-append root=UUID=x intel_iommu=on iommu=pt",
            "file=/c/root.ext4,format=raw,if=none,id=root,snapshot=on",
            "file=/d/disk0.raw,format=raw,if=none,id=disk0",
            "usb-storage,bus=xhci.0,drive=usbdrive0,id=token,removable=on",
            "-device e1000e",
            "-virtfs local,path=/srv/x,mount_tag=host,security_model=none,readonly=on",
            "socket,id=ser0,path=/d/console.sock,server=on,wait=on",
        ] {
            assert!(a.contains(want), "{want} not in {a}");
        }
        assert!(!a.contains("-no-shutdown"));
    }
}
