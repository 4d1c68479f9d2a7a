//! The kernel command line, as far as two crates read it: whether `init_on_free` is on.
//!
//! `mv-guard`'s memory step relies on it (the kernel zeroes every page it frees), `guard status`
//! and `mv-host`'s `host check` report when it is missing.

/// Whether a kernel command line turns `init_on_free` on: the last `init_on_free=` wins, with the
/// kernel's boolean spellings (`kstrtobool`: y, Y, 1, on). Arguments after a lone `--` go to
/// init, not the kernel.
pub fn init_on_free(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .take_while(|a| *a != "--")
        .filter_map(|a| a.strip_prefix("init_on_free="))
        .last()
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.starts_with(['y', '1']) || v.starts_with("on")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_kernels_rules() {
        for (line, on) in [
            ("init_on_free=1", true),
            ("quiet init_on_free=on", true),
            ("init_on_free=Y", true),
            ("init_on_free=0", false),
            ("init_on_free=1 init_on_free=off", false),
            ("init_on_free=0 init_on_free=1", true),
            ("page_poison=1", false),
            ("", false),
            ("root=/dev/vda -- init_on_free=1", false),
        ] {
            assert_eq!(init_on_free(line), on, "{line}");
        }
    }
}
