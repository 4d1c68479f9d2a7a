//! Which USB device is the armed token, and whether a uevent is its removal.
//!
//! The kernel's removal event carries the device path and `PRODUCT=vid/pid/bcd` but no serial
//! number (udev adds that from its database; the kernel cannot read a device that is gone). So the
//! [`Tracker`] learns each USB device's serial while it is present, from sysfs (a scan at start and
//! on every `add`), keyed by device path; on `remove` it looks the path up. Only the removal of a
//! device that matched the [`TokenSpec`] fires: another device, the same vendor:product with another
//! serial, add/change/bind events, and a token present at start and never removed do nothing.
//!
//! With [`Trigger::Insert`] (BusKill #83: a "USB killer" or unknown stick plugged into a locked
//! machine) the chain fires instead when a device matching the spec is *added*: only a new add
//! event after the watcher started, never a token already present then (nor a repeated add of a
//! path already known as the token). [`Trigger::Any`] fires on either.
//!
//! What this module is not: the actions (see [`crate::chain`]) or the event source
//! (see [`crate::watch`]).

pub use crate::token_key::{find_key_in_dir, find_key_on_token, TokenKeyError, TokenPartitions};
use crate::uevent::Uevent;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Why a `--token` value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Bad syntax.
    #[error("token `{0}`: expected SERIAL or VID:PID[:SERIAL] (VID and PID four hex digits)")]
    Syntax(String),
    /// A serial with characters we will not put in a udev rule.
    #[error("token `{0}`: a serial number is 1 to 126 printable characters without spaces, quotes, `*`, `?`, `[` or backslashes")]
    Serial(String),
}

/// The armed token: by serial alone, or by vendor:product with an optional serial.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSpec {
    /// Any USB device with this serial.
    Serial(String),
    /// Vendor and product ids, and optionally the serial.
    VidPid {
        /// Vendor id.
        vid: u16,
        /// Product id.
        pid: u16,
        /// Serial number.
        serial: Option<String>,
    },
}

fn valid_serial(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 126
        && s.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '*' | '?' | '[' | ']')
        })
}

fn hex4(s: &str) -> Option<u16> {
    if s.len() == 4 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        u16::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl std::str::FromStr for TokenSpec {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<TokenSpec, TokenError> {
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        if parts.len() >= 2 {
            if let (Some(vid), Some(pid)) = (hex4(parts[0]), hex4(parts[1])) {
                let serial = match parts.get(2) {
                    Some(sn) if valid_serial(sn) => Some(sn.to_string()),
                    Some(_) => return Err(TokenError::Serial(s.to_string())),
                    None => None,
                };
                return Ok(TokenSpec::VidPid { vid, pid, serial });
            }
            return Err(TokenError::Syntax(s.to_string()));
        }
        if valid_serial(s) {
            Ok(TokenSpec::Serial(s.to_string()))
        } else {
            Err(TokenError::Serial(s.to_string()))
        }
    }
}

impl fmt::Display for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSpec::Serial(s) => f.write_str(s),
            TokenSpec::VidPid { vid, pid, serial } => {
                write!(f, "{vid:04x}:{pid:04x}")?;
                if let Some(s) = serial {
                    write!(f, ":{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// Which token event runs the chain.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The token's removal (the default, and the only choice before `--on` existed).
    #[default]
    Remove,
    /// A device matching the spec being plugged in after the watcher started.
    Insert,
    /// Either.
    Any,
}

impl Trigger {
    /// Whether this is the default (kept out of the configuration file so old files stay byte
    /// for byte the same).
    pub fn is_remove(&self) -> bool {
        *self == Trigger::Remove
    }

    /// Whether the token's removal fires.
    pub fn on_remove(self) -> bool {
        matches!(self, Trigger::Remove | Trigger::Any)
    }

    /// Whether the token's insertion fires.
    pub fn on_insert(self) -> bool {
        matches!(self, Trigger::Insert | Trigger::Any)
    }

    /// The name used in the file, the CLI and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Remove => "remove",
            Trigger::Insert => "insert",
            Trigger::Any => "any",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A USB device as seen in sysfs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsbDevice {
    /// Path under /sys, e.g. `/devices/pci0000:00/0000:00:14.0/usb1/1-2`.
    pub devpath: String,
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// Serial number, when the device has one.
    pub serial: Option<String>,
}

impl TokenSpec {
    /// Whether a device is the token.
    pub fn matches(&self, d: &UsbDevice) -> bool {
        match self {
            TokenSpec::Serial(s) => d.serial.as_deref() == Some(s),
            TokenSpec::VidPid { vid, pid, serial } => {
                *vid == d.vid
                    && *pid == d.pid
                    && serial.as_ref().is_none_or(|s| d.serial.as_ref() == Some(s))
            }
        }
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads one USB device from `<sys><devpath>` (None when it is not a USB device or is gone).
pub fn read_device(sys: &Path, devpath: &str) -> Option<UsbDevice> {
    let dir = sys.join(devpath.trim_start_matches('/'));
    let vid = hex4(read_trim(&dir.join("idVendor"))?.as_str())?;
    let pid = hex4(read_trim(&dir.join("idProduct"))?.as_str())?;
    let serial = read_trim(&dir.join("serial")).filter(|s| !s.is_empty());
    Some(UsbDevice {
        devpath: devpath.to_string(),
        vid,
        pid,
        serial,
    })
}

/// Every USB device present: `<sys>/bus/usb/devices/*`, resolved to their device paths.
pub fn scan(sys: &Path) -> Vec<UsbDevice> {
    let Ok(root) = sys.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(sys.join("bus/usb/devices")) else {
        return Vec::new();
    };
    let mut out: Vec<UsbDevice> = entries
        .flatten()
        .filter_map(|e| e.path().canonicalize().ok())
        .filter_map(|p| {
            let rel = p.strip_prefix(&root).ok()?;
            read_device(sys, &format!("/{}", rel.display()))
        })
        .collect();
    out.sort_by(|a, b| a.devpath.cmp(&b.devpath));
    out
}

/// The block devices of a USB device (its partitions, or the whole disk when it has none), as
/// names under /dev: found as `<sys><devpath>/**/block/<disk>[/<partition>]`.
pub fn block_devices(sys: &Path, devpath: &str) -> Vec<String> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<String>) {
        if depth > 8 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            // Symlinks (driver, subsystem, port) lead out of the device: never follow them.
            if !ft.is_dir() {
                continue;
            }
            let path = e.path();
            if e.file_name() == "block" {
                for disk in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let name = disk.file_name().to_string_lossy().into_owned();
                    let mut parts: Vec<String> = std::fs::read_dir(disk.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|p| p.path().join("partition").exists())
                        .map(|p| p.file_name().to_string_lossy().into_owned())
                        .collect();
                    parts.sort();
                    if parts.is_empty() {
                        out.push(name);
                    } else {
                        out.extend(parts);
                    }
                }
            } else {
                walk(&path, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&sys.join(devpath.trim_start_matches('/')), 0, &mut out);
    out.sort();
    out
}

/// What the tracker made of one event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Not a USB device event, or not a device we care about.
    Ignore {
        /// Why.
        why: &'static str,
    },
    /// The token was plugged in: armed from now on.
    TokenArrived {
        /// The device.
        device: UsbDevice,
    },
    /// The token was removed (or, with [`Trigger::Insert`]/[`Trigger::Any`], added): run the
    /// chain. The event's action tells which.
    Fire {
        /// The device that left or arrived.
        device: UsbDevice,
    },
}

/// Tracks USB devices by path and decides on each uevent.
#[derive(Debug)]
pub struct Tracker {
    spec: TokenSpec,
    trigger: Trigger,
    known: HashMap<String, UsbDevice>,
}

impl Tracker {
    /// Starts from the devices present now.
    pub fn new(spec: TokenSpec, present: Vec<UsbDevice>) -> Tracker {
        let known = present
            .into_iter()
            .map(|d| (d.devpath.clone(), d))
            .collect();
        Tracker {
            spec,
            trigger: Trigger::Remove,
            known,
        }
    }

    /// Fires on `trigger` instead of on removal only.
    pub fn with_trigger(mut self, trigger: Trigger) -> Tracker {
        self.trigger = trigger;
        self
    }

    /// The token devices currently present.
    pub fn tokens_present(&self) -> Vec<&UsbDevice> {
        let mut v: Vec<&UsbDevice> = self
            .known
            .values()
            .filter(|d| self.spec.matches(d))
            .collect();
        v.sort_by(|a, b| a.devpath.cmp(&b.devpath));
        v
    }

    /// Decides on one event; on `add`, reads the new device from `sys`.
    pub fn on_event(&mut self, ev: &Uevent, sys: &Path) -> Decision {
        if !ev.is_usb_device() {
            return Decision::Ignore {
                why: "not a USB device",
            };
        }
        match ev.action.as_str() {
            "add" => {
                let device = read_device(sys, &ev.devpath).or_else(|| {
                    // Gone again already, or sysfs not readable: remember what the event says.
                    ev.product().map(|(vid, pid)| UsbDevice {
                        devpath: ev.devpath.clone(),
                        vid,
                        pid,
                        serial: None,
                    })
                });
                let Some(device) = device else {
                    return Decision::Ignore {
                        why: "add without PRODUCT",
                    };
                };
                let was_token = self
                    .known
                    .insert(device.devpath.clone(), device.clone())
                    .is_some_and(|d| self.spec.matches(&d));
                if !self.spec.matches(&device) {
                    Decision::Ignore {
                        why: "added device is not the token",
                    }
                } else if self.trigger.on_insert() && was_token {
                    // A replayed add (`udevadm trigger --action=add`) of a token already here.
                    Decision::Ignore {
                        why: "added token was already present",
                    }
                } else if self.trigger.on_insert() {
                    Decision::Fire { device }
                } else {
                    Decision::TokenArrived { device }
                }
            }
            "remove" => match self.known.remove(&ev.devpath) {
                Some(device) if self.spec.matches(&device) && self.trigger.on_remove() => {
                    Decision::Fire { device }
                }
                Some(device) if self.spec.matches(&device) => Decision::Ignore {
                    why: "removed token (fires on insert only)",
                },
                Some(_) => Decision::Ignore {
                    why: "removed device is not the token",
                },
                None => Decision::Ignore {
                    why: "removed device was never seen",
                },
            },
            _ => Decision::Ignore {
                why: "neither add nor remove",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(path: &str, vid: u16, pid: u16, serial: Option<&str>) -> UsbDevice {
        UsbDevice {
            devpath: path.into(),
            vid,
            pid,
            serial: serial.map(Into::into),
        }
    }

    #[test]
    fn parses_specs() {
        assert_eq!(
            "1050:0407:CC123".parse::<TokenSpec>().unwrap(),
            TokenSpec::VidPid {
                vid: 0x1050,
                pid: 0x407,
                serial: Some("CC123".into())
            }
        );
        assert_eq!(
            "1050:0407".parse::<TokenSpec>().unwrap().to_string(),
            "1050:0407"
        );
        assert_eq!(
            "AA55BB".parse::<TokenSpec>().unwrap(),
            TokenSpec::Serial("AA55BB".into())
        );
        assert!("10:07".parse::<TokenSpec>().is_err());
        assert!("has space".parse::<TokenSpec>().is_err());
        assert!("1050:0407:bad\"q".parse::<TokenSpec>().is_err());
        assert!("".parse::<TokenSpec>().is_err());
    }

    #[test]
    fn only_the_token_removal_fires() {
        let spec: TokenSpec = "1050:0407:TOKEN1".parse().unwrap();
        let sys = Path::new("/nonexistent");
        let mut t = Tracker::new(
            spec,
            vec![
                dev("/d/1-1", 0x1050, 0x407, Some("OTHER")),
                dev("/d/1-2", 0x1050, 0x407, Some("TOKEN1")),
                dev("/d/1-3", 0x046d, 0xc52b, None),
            ],
        );
        assert_eq!(t.tokens_present().len(), 1);
        let rm = |p: &str| Uevent::usb("remove", p, 0x1050, 0x407, 1);
        assert!(matches!(
            t.on_event(&rm("/d/1-1"), sys),
            Decision::Ignore { .. }
        ));
        assert!(matches!(
            t.on_event(&rm("/d/1-3"), sys),
            Decision::Ignore { .. }
        ));
        assert!(matches!(
            t.on_event(&rm("/d/9-9"), sys),
            Decision::Ignore { .. }
        ));
        let mut iface = rm("/d/1-2/1-2:1.0");
        iface.vars.insert("DEVTYPE".into(), "usb_interface".into());
        assert!(matches!(t.on_event(&iface, sys), Decision::Ignore { .. }));
        let add = Uevent::usb("add", "/d/1-2", 0x1050, 0x407, 2);
        // An add of the same path while present (no serial readable): overwrites, not the token.
        let _ = add;
        assert!(matches!(
            t.on_event(&rm("/d/1-2"), sys),
            Decision::Fire { .. }
        ));
        // Already gone: a repeated removal does not fire twice.
        assert!(matches!(
            t.on_event(&rm("/d/1-2"), sys),
            Decision::Ignore { .. }
        ));
    }

    #[test]
    fn finds_the_token_s_partitions() {
        let d = tempfile::tempdir().unwrap();
        let host = d
            .path()
            .join("devices/usb1/1-4/1-4:1.0/host6/target6:0:0/6:0:0:0/block/sdb");
        std::fs::create_dir_all(host.join("sdb1")).unwrap();
        std::fs::write(host.join("sdb1/partition"), "1\n").unwrap();
        std::fs::create_dir_all(host.join("queue")).unwrap();
        assert_eq!(block_devices(d.path(), "/devices/usb1/1-4"), vec!["sdb1"]);
        std::fs::remove_file(host.join("sdb1/partition")).unwrap();
        assert_eq!(block_devices(d.path(), "/devices/usb1/1-4"), vec!["sdb"]);
        assert!(block_devices(d.path(), "/devices/usb1/1-5").is_empty());
    }

    #[test]
    fn learns_serials_from_sysfs_on_add() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("devices/usb1/1-4");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("idVendor"), "1050\n").unwrap();
        std::fs::write(dir.join("idProduct"), "0407\n").unwrap();
        std::fs::write(dir.join("serial"), "TOKEN1\n").unwrap();
        let mut t = Tracker::new("TOKEN1".parse().unwrap(), vec![]);
        let add = Uevent::usb("add", "/devices/usb1/1-4", 0x1050, 0x407, 1);
        assert!(matches!(
            t.on_event(&add, d.path()),
            Decision::TokenArrived { .. }
        ));
        let rm = Uevent::usb("remove", "/devices/usb1/1-4", 0x1050, 0x407, 2);
        assert!(matches!(t.on_event(&rm, d.path()), Decision::Fire { .. }));
    }

    fn token_sysfs(root: &Path, port: &str, serial: &str) -> String {
        let devpath = format!("/devices/usb1/{port}");
        let dir = root.join(devpath.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("idVendor"), "1050\n").unwrap();
        std::fs::write(dir.join("idProduct"), "0407\n").unwrap();
        std::fs::write(dir.join("serial"), format!("{serial}\n")).unwrap();
        devpath
    }

    #[test]
    fn insert_fires_only_on_a_new_add_of_the_token() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let present = token_sysfs(sys, "1-1", "TOKEN1");
        let decoy = token_sysfs(sys, "1-2", "OTHER");
        let fresh = token_sysfs(sys, "1-4", "TOKEN1");
        let spec: TokenSpec = "1050:0407:TOKEN1".parse().unwrap();
        let mut t = Tracker::new(spec, vec![read_device(sys, &present).unwrap()])
            .with_trigger(Trigger::Insert);
        let ev = |a: &str, p: &str, n| Uevent::usb(a, p, 0x1050, 0x407, n);
        let ignored = |d: Decision| matches!(d, Decision::Ignore { .. });
        // The token present at start: a replayed add does not fire, nor does its removal.
        assert_eq!(
            t.on_event(&ev("add", &present, 1), sys),
            Decision::Ignore {
                why: "added token was already present"
            }
        );
        assert_eq!(
            t.on_event(&ev("remove", &present, 2), sys),
            Decision::Ignore {
                why: "removed token (fires on insert only)"
            }
        );
        // Same VID:PID, another serial; another device; an interface; a change event.
        assert!(ignored(t.on_event(&ev("add", &decoy, 3), sys)));
        assert!(ignored(t.on_event(
            &Uevent::usb("add", "/devices/usb1/1-3", 0x046d, 0xc52b, 4),
            sys
        )));
        let mut iface = ev("add", &format!("{fresh}/1-4:1.0"), 5);
        iface.vars.insert("DEVTYPE".into(), "usb_interface".into());
        assert!(ignored(t.on_event(&iface, sys)));
        assert!(ignored(t.on_event(&ev("change", &fresh, 6), sys)));
        // A new token arrives: fire, with the device read from sysfs.
        match t.on_event(&ev("add", &fresh, 7), sys) {
            Decision::Fire { device } => assert_eq!(device.serial.as_deref(), Some("TOKEN1")),
            d => panic!("expected fire, got {d:?}"),
        }
        // The token pulled out again and re-inserted at the same port is a new insertion.
        assert!(ignored(t.on_event(&ev("remove", &fresh, 8), sys)));
        assert!(matches!(
            t.on_event(&ev("add", &fresh, 9), sys),
            Decision::Fire { .. }
        ));
    }

    #[test]
    fn any_fires_on_both_and_remove_is_the_default() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let p = token_sysfs(sys, "1-1", "TOKEN1");
        let spec: TokenSpec = "TOKEN1".parse().unwrap();
        let ev = |a: &str, n| Uevent::usb(a, &p, 0x1050, 0x407, n);
        let mut any = Tracker::new(spec.clone(), vec![]).with_trigger(Trigger::Any);
        assert!(matches!(
            any.on_event(&ev("add", 1), sys),
            Decision::Fire { .. }
        ));
        assert!(matches!(
            any.on_event(&ev("remove", 2), sys),
            Decision::Fire { .. }
        ));
        let mut rm = Tracker::new(spec, vec![]);
        assert!(matches!(
            rm.on_event(&ev("add", 1), sys),
            Decision::TokenArrived { .. }
        ));
        assert!(matches!(
            rm.on_event(&ev("remove", 2), sys),
            Decision::Fire { .. }
        ));
        assert_eq!(Trigger::default(), Trigger::Remove);
        assert!(Trigger::Any.on_insert() && Trigger::Any.on_remove());
        assert!(!Trigger::Insert.on_remove() && !Trigger::Remove.on_insert());
    }
}
