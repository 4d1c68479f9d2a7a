//! Text a machine wrote that a person is about to read: [`last_lines`], the tail of a serial
//! console or log, safe to print on a terminal.
//!
//! A guest writes what it likes on its console (carriage returns, escape sequences, bells);
//! the CLI and the tests show its last lines in error messages, so every control character but
//! the tab is dropped first, and lines left blank are skipped.
//!
//! What this is not: a terminal emulator (an escape sequence's parameters stay as plain text, only
//! its control characters go) nor a reader: callers read the file or buffer and frame the lines
//! (indentation, a maximum size read) themselves.

/// The last `n` non-blank lines of `text`, each with its control characters (all but the tab)
/// removed. Fewer when `text` has fewer; none when `n` is 0.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect::<String>()
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines.drain(..lines.len().saturating_sub(n));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_non_blank_lines_without_control_characters() {
        let text = "boot\r\n\r\n  \r\nlogin:\x1b[0m x\x07\r\n\tindented\r\n";
        assert_eq!(last_lines(text, 2), ["login:[0m x", "\tindented"]);
        assert_eq!(last_lines(text, 10), ["boot", "login:[0m x", "\tindented"]);
        assert!(last_lines(text, 0).is_empty());
        assert!(last_lines("", 5).is_empty());
        assert!(last_lines("\r\n\x1b\n", 5).is_empty());
    }

    #[test]
    fn a_line_without_newline_counts() {
        assert_eq!(last_lines("a\nb", 1), ["b"]);
    }
}
