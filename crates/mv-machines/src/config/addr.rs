//! The model's own rule for a machine's default MAC address. The address types of
//! `multiverse.toml` (PCI addresses, USB ids, IPv4 subnets, MAC addresses) are `mv_core::model`'s.

use mv_core::model::MacAddress;

/// A stable, locally administered-looking address in QEMU's `52:54:00` range derived from `seed`
/// (the machine name and network): re-rendering or cloning a definition never changes a machine's
/// MAC, which the old notes complained about.
pub(crate) fn derived_mac(seed: &str) -> MacAddress {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("multiverse-mac-v1:{seed}").as_bytes());
    MacAddress([0x52, 0x54, 0x00, h[0], h[1], h[2]])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn derived_mac_is_stable_and_parses_back() {
        let m = derived_mac("a.b/net0");
        assert_eq!(m, derived_mac("a.b/net0"));
        assert_eq!(m.to_string().parse::<MacAddress>().unwrap(), m);
        assert_eq!(&m.0[..3], &[0x52, 0x54, 0x00]);
    }
}
