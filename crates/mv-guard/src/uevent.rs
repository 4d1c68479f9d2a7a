//! Kernel uevents: the datagrams of a `NETLINK_KOBJECT_UEVENT` socket, parsed.
//!
//! The kernel sends `ACTION@DEVPATH\0KEY=VALUE\0KEY=VALUE\0...`. udevd re-broadcasts its own,
//! richer messages on another multicast group with a binary `libudev` header; those are refused
//! here: the watcher listens to the kernel only (udevd could be stopped or lie). [`Uevent::parse`]
//! takes untrusted bytes and never panics (fuzzed and property-tested).
//!
//! What this module is not: a device database. It knows one message at a time.

use std::collections::BTreeMap;

/// Largest message accepted (the kernel's `UEVENT_BUFFER_SIZE` is 2048; udev's is 8192).
pub const MAX_LEN: usize = 8192;

/// Why bytes are not a kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty or oversized.
    #[error("uevent of {0} bytes (expected 1..=8192)")]
    Size(usize),
    /// A udevd message rather than a kernel one.
    #[error("a udevd (libudev) message, not a kernel uevent")]
    Libudev,
    /// The first field is not `ACTION@DEVPATH`.
    #[error("first field is not ACTION@DEVPATH")]
    Header,
    /// A field is not `KEY=VALUE` or not UTF-8.
    #[error("field {0} is not KEY=VALUE text")]
    Field(usize),
    /// `ACTION=`/`DEVPATH=` disagree with the header.
    #[error("header and {0}= disagree")]
    Mismatch(&'static str),
}

/// One parsed uevent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`, `unbind`, `move`, `online`, `offline`.
    pub action: String,
    /// The device path under /sys (`/devices/pci0000:00/.../usb1/1-2`).
    pub devpath: String,
    /// Every `KEY=VALUE` field.
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    /// Parses one datagram.
    pub fn parse(bytes: &[u8]) -> Result<Uevent, ParseError> {
        if bytes.is_empty() || bytes.len() > MAX_LEN {
            return Err(ParseError::Size(bytes.len()));
        }
        if bytes.starts_with(b"libudev\0") {
            return Err(ParseError::Libudev);
        }
        let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        let mut fields = body.split(|b| *b == 0);
        let header = fields
            .next()
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or(ParseError::Header)?;
        let (action, devpath) = header.split_once('@').ok_or(ParseError::Header)?;
        if action.is_empty() || !devpath.starts_with('/') {
            return Err(ParseError::Header);
        }
        let mut vars = BTreeMap::new();
        for (i, f) in fields.enumerate() {
            let text = std::str::from_utf8(f).map_err(|_| ParseError::Field(i + 1))?;
            let (k, v) = text.split_once('=').ok_or(ParseError::Field(i + 1))?;
            if k.is_empty() {
                return Err(ParseError::Field(i + 1));
            }
            vars.insert(k.to_string(), v.to_string());
        }
        if vars.get("ACTION").is_some_and(|a| a != action) {
            return Err(ParseError::Mismatch("ACTION"));
        }
        if vars.get("DEVPATH").is_some_and(|d| d != devpath) {
            return Err(ParseError::Mismatch("DEVPATH"));
        }
        Ok(Uevent {
            action: action.to_string(),
            devpath: devpath.to_string(),
            vars,
        })
    }

    /// Encodes in the kernel's format (tests, benchmarks, the fixture source).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{}@{}", self.action, self.devpath).into_bytes();
        out.push(0);
        for (k, v) in &self.vars {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    /// A field.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// Whether this is about a whole USB device (not one of its interfaces).
    pub fn is_usb_device(&self) -> bool {
        self.var("SUBSYSTEM") == Some("usb") && self.var("DEVTYPE") == Some("usb_device")
    }

    /// Vendor and product ids from `PRODUCT=vvvv/pppp/bcd` (hex, no leading zeros).
    pub fn product(&self) -> Option<(u16, u16)> {
        let p = self.var("PRODUCT")?;
        let mut it = p.split('/');
        let vid = u16::from_str_radix(it.next()?, 16).ok()?;
        let pid = u16::from_str_radix(it.next()?, 16).ok()?;
        Some((vid, pid))
    }

    /// The kernel's sequence number.
    pub fn seqnum(&self) -> Option<u64> {
        self.var("SEQNUM")?.parse().ok()
    }

    /// A USB device event as the kernel sends it (fixtures and benchmarks).
    pub fn usb(action: &str, devpath: &str, vid: u16, pid: u16, seqnum: u64) -> Uevent {
        let mut vars = BTreeMap::new();
        vars.insert("ACTION".into(), action.into());
        vars.insert("DEVPATH".into(), devpath.into());
        vars.insert("SUBSYSTEM".into(), "usb".into());
        vars.insert("DEVTYPE".into(), "usb_device".into());
        vars.insert("PRODUCT".into(), format!("{vid:x}/{pid:x}/100"));
        vars.insert("TYPE".into(), "0/0/0".into());
        vars.insert("SEQNUM".into(), seqnum.to_string());
        Uevent {
            action: action.into(),
            devpath: devpath.into(),
            vars,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_kernel_usb_removal() {
        let raw = b"remove@/devices/pci0000:00/0000:00:14.0/usb1/1-2\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2\0SUBSYSTEM=usb\0MAJOR=189\0MINOR=4\0DEVNAME=bus/usb/001/005\0DEVTYPE=usb_device\0PRODUCT=1050/407/543\0TYPE=0/0/0\0BUSNUM=001\0DEVNUM=005\0SEQNUM=4242\0";
        let u = Uevent::parse(raw).unwrap();
        assert_eq!(u.action, "remove");
        assert_eq!(u.devpath, "/devices/pci0000:00/0000:00:14.0/usb1/1-2");
        assert!(u.is_usb_device());
        assert_eq!(u.product(), Some((0x1050, 0x0407)));
        assert_eq!(u.seqnum(), Some(4242));
    }

    #[test]
    fn refuses_bad_messages() {
        assert_eq!(Uevent::parse(b""), Err(ParseError::Size(0)));
        assert_eq!(
            Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"),
            Err(ParseError::Libudev)
        );
        assert_eq!(Uevent::parse(b"nodevpath\0"), Err(ParseError::Header));
        assert_eq!(Uevent::parse(b"add@rel\0"), Err(ParseError::Header));
        assert_eq!(Uevent::parse(b"add@/x\0junk\0"), Err(ParseError::Field(1)));
        assert_eq!(
            Uevent::parse(b"add@/x\0ACTION=remove\0"),
            Err(ParseError::Mismatch("ACTION"))
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Uevent::parse(&bytes);
        }

        #[test]
        fn encode_parse_round_trip(action in "[a-z]{1,8}", path in "(/[a-z0-9:.-]{1,12}){1,6}",
                                   vid in any::<u16>(), pid in any::<u16>(), seq in any::<u64>()) {
            let u = Uevent::usb(&action, &path, vid, pid, seq);
            let back = Uevent::parse(&u.encode()).unwrap();
            prop_assert_eq!(back.product(), Some((vid, pid)));
            prop_assert_eq!(back, u);
        }
    }
}
