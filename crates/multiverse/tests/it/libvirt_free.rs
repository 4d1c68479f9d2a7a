//! The headline invariant of the two binaries: `multiverse` never links libvirt, `multiverse-virt`
//! does (docs/cli.md, ARCHITECTURE.md "Invariants across crates").
//!
//! Hermetic: it reads the dynamic section of the built binaries with `readelf -d` (binutils) and
//! starts nothing. The check has a control: the same reading of `multiverse-virt` must list
//! libvirt, so a reading that finds nothing (a changed `readelf` output, a static build) fails
//! instead of passing. `multiverse-virt` is its own package; `cargo test --workspace` builds it
//! next to `multiverse`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shared libraries `bin` asks the dynamic loader for (its `NEEDED` entries).
fn needed(bin: &Path) -> Vec<String> {
    let readelf = mv_testkit::require_tool("readelf");
    let out = Command::new(readelf)
        .args(["-d", "-W"])
        .arg(bin)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "readelf -d {}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // ` 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]`
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l.rfind(']')?;
            Some(l[start..end].to_string())
        })
        .collect()
}

fn links_libvirt(libs: &[String]) -> bool {
    libs.iter().any(|l| l.starts_with("libvirt"))
}

/// `multiverse-virt`, beside `multiverse` in the target folder.
fn virt_bin() -> PathBuf {
    let mv = Path::new(env!("CARGO_BIN_EXE_multiverse"));
    let virt = mv.with_file_name("multiverse-virt");
    assert!(
        virt.is_file(),
        "{} is missing: multiverse-virt is its own package, which `cargo test -p multiverse` does \
         not build; build it with `cargo build -p multiverse-virt` (same profile), or run \
         `cargo test --workspace`",
        virt.display()
    );
    virt
}

#[test]
fn multiverse_does_not_link_libvirt_and_multiverse_virt_does() {
    let mv = Path::new(env!("CARGO_BIN_EXE_multiverse"));
    let mv_libs = needed(mv);
    // The reading works: every dynamically linked program needs the C library.
    assert!(
        mv_libs.iter().any(|l| l.starts_with("libc.so")),
        "no libc among the NEEDED entries of {}: {mv_libs:?}",
        mv.display()
    );
    assert!(
        !links_libvirt(&mv_libs),
        "{} links libvirt: {mv_libs:?}",
        mv.display()
    );
    // Control: the same check sees libvirt where it is.
    let virt = virt_bin();
    let virt_libs = needed(&virt);
    assert!(
        links_libvirt(&virt_libs),
        "{} does not list libvirt: the check itself is broken ({virt_libs:?})",
        virt.display()
    );
}
