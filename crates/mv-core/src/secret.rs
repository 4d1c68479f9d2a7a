//! [`Secret`]: bytes or text that are wiped from memory on drop and never printed.

use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// A secret value. `Debug` prints `Secret([REDACTED])`; the contents are zeroised on drop.
/// Read it with [`Secret::expose`], which keeps every use greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(Zeroizing<T>);

impl<T: Zeroize> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(Zeroizing::new(value))
    }
    /// Borrows the secret contents.
    pub fn expose(&self) -> &T {
        &self.0
    }
    /// Borrows the secret contents mutably.
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret::new(value)
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// Secret bytes.
pub type SecretBytes = Secret<Vec<u8>>;
/// Secret text (a passphrase, a password).
pub type SecretString = Secret<String>;

/// The lowercase hex of a secret, as a secret: how an encrypted disk's passphrase is made from
/// its key (QEMU takes LUKS passphrases as UTF-8 only). Built in one allocation, so no
/// reallocation leaves a copy behind.
pub fn hex_lower(bytes: &SecretBytes) -> SecretBytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = bytes.expose();
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    Secret::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lower_is_the_keys_hex() {
        let h = hex_lower(&SecretBytes::new(vec![0x00, 0x9f, 0xa5, 0xff]));
        assert_eq!(h.expose().as_slice(), b"009fa5ff");
    }
    #[test]
    fn debug_is_redacted() {
        let s = SecretString::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert_eq!(s.expose(), "hunter2");
    }
}
