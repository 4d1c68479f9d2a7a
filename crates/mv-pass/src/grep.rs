//! `pass grep`'s arguments: GNU grep's options and patterns, decided in process when we can.
//!
//! pass 1.7.4 hands every argument of `pass grep` to `grep --color=always` and feeds it each
//! decrypted entry on stdin. [`plan`] reads those arguments as GNU grep would and returns either
//! a [`Matcher`] that selects the same lines in process (the common options: `-i -y
//! --no-ignore-case -v -w -x -c -n -s -m NUM -e PAT -E -F -G`, colour options ignored, basic
//! and extended regular expressions translated to the `regex` crate), or [`Plan::External`]: the
//! arguments need grep itself (any other option, a long option abbreviated, `-f`, `-P`,
//! back-references, file operands, a pattern the regex crate refuses), and the caller runs grep
//! per entry as pass does (grep also judges what is an invalid pattern).
//!
//! What this module is not: it runs nothing and reads no file. Differences left: the regex
//! crate matches by Unicode scalar values where grep in the C locale matches bytes, and its
//! case folding is Unicode's.

/// Options the matcher applies, besides the pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `-v`: select the lines that do not match.
    pub invert: bool,
    /// `-c`: print the number of selected lines instead of the lines.
    pub count: bool,
    /// `-n`: prefix each line with its number and `:`.
    pub line_number: bool,
    /// `-m NUM`: stop after NUM selected lines.
    pub max_count: Option<u64>,
}

/// Lines selected in process, as grep would select them.
#[derive(Debug, Clone)]
pub struct Matcher {
    re: regex::Regex,
    /// What to do with matches.
    pub selection: Selection,
}

impl Matcher {
    /// Whether grep selects this line (`-v` applied).
    pub fn selects(&self, line: &str) -> bool {
        self.re.is_match(line) != self.selection.invert
    }

    /// The selected lines of `text` (split on `\n` as grep does), with their 1-based numbers, at
    /// most `-m` of them.
    pub fn select<'t>(&self, text: &'t str) -> Vec<(usize, &'t str)> {
        let max = self
            .selection
            .max_count
            .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        lines(text)
            .enumerate()
            .filter(|(_, l)| self.selects(l))
            .map(|(i, l)| (i + 1, l))
            .take(max)
            .collect()
    }

    /// What grep would print for `text` on stdin (without colour), or `None` when grep would
    /// select nothing (exit status 1, which pass skips).
    pub fn output(&self, text: &str) -> Option<String> {
        let sel = self.select(text);
        if sel.is_empty() {
            return None;
        }
        if self.selection.count {
            return Some(format!("{}\n", sel.len()));
        }
        let mut out = String::new();
        for (n, l) in sel {
            if self.selection.line_number {
                out.push_str(&format!("{n}:"));
            }
            out.push_str(l);
            out.push('\n');
        }
        Some(out)
    }
}

/// Lines as grep reads them: split on `\n`, a last line without one still a line, `\r` kept.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    body.split('\n').filter(move |_| !empty)
}

/// How `pass grep`'s arguments are served.
#[derive(Debug, Clone)]
pub enum Plan {
    /// In process.
    Native(Matcher),
    /// By grep itself, with these arguments (after `--color=never`), once per entry.
    External(Vec<String>),
}

/// Arguments grep itself would refuse; the message is grep's kind of message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrepArgError {
    /// No pattern.
    #[error("no search string given")]
    NoPattern,
    /// An option that needs a value lacks it.
    #[error("option '{0}' requires an argument")]
    MissingValue(String),
    /// `-m` with something that is no number.
    #[error("invalid max count {0:?}")]
    BadMaxCount(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Basic,
    Extended,
    Fixed,
}

/// Reads `pass grep`'s arguments (GNU getopt_long rules: options and operands mixed, `--` ends
/// the options, short options cluster, `-eX` and `-e X`, `--regexp=X` and `--regexp X`).
pub fn plan(args: &[String]) -> Result<Plan, GrepArgError> {
    let external = || Ok(Plan::External(args.to_vec()));
    let mut syntax = Syntax::Basic;
    let mut ignore_case = false;
    let (mut word, mut line) = (false, false);
    let mut sel = Selection::default();
    let mut patterns: Vec<String> = Vec::new();
    let mut operands: Vec<String> = Vec::new();
    let mut given_e = false;
    let mut i = 0;
    let mut only_operands = false;
    let value = |i: &mut usize, name: &str| -> Result<String, GrepArgError> {
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| GrepArgError::MissingValue(name.to_string()))
    };
    let max_count = |v: &str| -> Result<u64, GrepArgError> {
        v.parse::<u64>()
            .map_err(|_| GrepArgError::BadMaxCount(v.to_string()))
    };
    while i < args.len() {
        let a = &args[i];
        if only_operands || a == "-" || !a.starts_with('-') {
            operands.push(a.clone());
        } else if a == "--" {
            only_operands = true;
        } else if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match (name, inline.is_some()) {
                ("ignore-case", false) => ignore_case = true,
                ("no-ignore-case", false) => ignore_case = false,
                ("invert-match", false) => sel.invert = true,
                ("word-regexp", false) => word = true,
                ("line-regexp", false) => line = true,
                ("count", false) => sel.count = true,
                ("line-number", false) => sel.line_number = true,
                ("no-messages", false) => {}
                ("fixed-strings", false) => syntax = Syntax::Fixed,
                ("extended-regexp", false) => syntax = Syntax::Extended,
                ("basic-regexp", false) => syntax = Syntax::Basic,
                ("color" | "colour", _) => {}
                ("regexp", _) => {
                    let v = match inline {
                        Some(v) => v,
                        None => value(&mut i, "--regexp")?,
                    };
                    patterns.push(v);
                    given_e = true;
                }
                ("max-count", _) => {
                    let v = match inline {
                        Some(v) => v,
                        None => value(&mut i, "--max-count")?,
                    };
                    sel.max_count = Some(max_count(&v)?);
                }
                // Anything else (abbreviations included): grep decides.
                _ => return external(),
            }
        } else {
            let cluster: Vec<char> = a[1..].chars().collect();
            let mut k = 0;
            while k < cluster.len() {
                let c = cluster[k];
                match c {
                    'i' | 'y' => ignore_case = true,
                    'v' => sel.invert = true,
                    'w' => word = true,
                    'x' => line = true,
                    'c' => sel.count = true,
                    'n' => sel.line_number = true,
                    's' => {}
                    'F' => syntax = Syntax::Fixed,
                    'E' => syntax = Syntax::Extended,
                    'G' => syntax = Syntax::Basic,
                    'e' | 'm' => {
                        let rest: String = cluster[k + 1..].iter().collect();
                        let v = if rest.is_empty() {
                            value(&mut i, &format!("-{c}"))?
                        } else {
                            rest
                        };
                        if c == 'e' {
                            patterns.push(v);
                            given_e = true;
                        } else {
                            sel.max_count = Some(max_count(&v)?);
                        }
                        break;
                    }
                    _ => return external(),
                }
                k += 1;
            }
        }
        i += 1;
    }
    if !given_e {
        if operands.is_empty() {
            return Err(GrepArgError::NoPattern);
        }
        patterns.push(operands.remove(0));
    }
    // File operands make grep read those files rather than the entry: pass does the same.
    if !operands.is_empty() {
        return external();
    }
    // A pattern holding newlines is one pattern per line.
    let mut alts = Vec::new();
    for p in patterns.iter().flat_map(|p| p.split('\n')) {
        let t = match syntax {
            Syntax::Fixed => Some(regex::escape(p)),
            Syntax::Basic => translate(p, false),
            Syntax::Extended => translate(p, true),
        };
        match t {
            Some(t) => alts.push(format!("(?:{t})")),
            None => return external(),
        }
    }
    let mut re = alts.join("|");
    if word {
        re = format!("(?:^|[^0-9A-Za-z_])(?:{re})(?:[^0-9A-Za-z_]|$)");
    }
    if line {
        re = format!("^(?:{re})$");
    }
    // What the regex crate refuses (`a{` is a literal for GNU grep -E), grep judges.
    match regex::RegexBuilder::new(&re)
        .case_insensitive(ignore_case)
        .build()
    {
        Ok(re) => Ok(Plan::Native(Matcher { re, selection: sel })),
        Err(_) => external(),
    }
}

/// A POSIX bracket expression starting at `chars[i]` (just after `[`), as regex-crate syntax;
/// returns it and the index after the closing `]`. `None`: unterminated or unsupported.
fn bracket(chars: &[char], mut i: usize) -> Option<(String, usize)> {
    let mut out = String::from("[");
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let start = i;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && i > start {
            out.push(']');
            return Some((out, i + 1));
        }
        if c == '[' && matches!(chars.get(i + 1), Some(':' | '=' | '.')) {
            let kind = chars[i + 1];
            if kind != ':' {
                return None;
            }
            // [:class:]: copied as it is (the regex crate knows the POSIX classes).
            let close = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == ':' && chars[j + 1] == ']')?;
            out.extend(&chars[i..close + 2]);
            i = close + 2;
            continue;
        }
        let range = c != '-'
            && chars.get(i + 1) == Some(&'-')
            && chars.get(i + 2).is_some_and(|n| *n != ']');
        push_class_char(&mut out, c);
        if range {
            out.push('-');
            push_class_char(&mut out, chars[i + 2]);
            i += 3;
        } else {
            i += 1;
        }
    }
}

fn push_class_char(out: &mut String, c: char) {
    if c.is_ascii_punctuation() {
        out.push('\\');
    }
    out.push(c);
}

/// A GNU basic (`ere` false) or extended regular expression in regex-crate syntax; `None` for
/// what the regex crate cannot do the same way (back-references, `\` before an ordinary letter,
/// `[=x=]`, `[.x.]`), so that grep itself decides.
pub(crate) fn translate(p: &str, ere: bool) -> Option<String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    // Where `^` is an anchor and `*` is literal in a BRE: at the start of the pattern or of a
    // group or alternative.
    let mut at_start = true;
    while i < chars.len() {
        let c = chars[i];
        let was_start = at_start;
        at_start = false;
        match c {
            '\\' => {
                let n = *chars.get(i + 1)?;
                i += 2;
                match n {
                    '(' | ')' | '{' | '}' | '|' | '+' | '?' if !ere => {
                        out.push(n);
                        at_start = matches!(n, '(' | '|');
                    }
                    '<' => out.push_str(r"\b{start}"),
                    '>' => out.push_str(r"\b{end}"),
                    'w' | 'W' | 's' | 'S' | 'b' | 'B' => {
                        out.push('\\');
                        out.push(n);
                    }
                    '`' => out.push_str(r"\A"),
                    '\'' => out.push_str(r"\z"),
                    n if n.is_ascii_punctuation() => {
                        out.push('\\');
                        out.push(n);
                    }
                    _ => return None,
                }
                continue;
            }
            '[' => {
                let (class, next) = bracket(&chars, i + 1)?;
                out.push_str(&class);
                i = next;
                continue;
            }
            '^' if ere || was_start => out.push('^'),
            '$' if ere
                || i + 1 == chars.len()
                || (chars.get(i + 1) == Some(&'\\')
                    && matches!(chars.get(i + 2), Some(')' | '|'))) =>
            {
                out.push('$')
            }
            '*' if was_start => out.push_str(r"\*"),
            '*' | '.' => out.push(c),
            '(' | ')' | '|' | '+' | '?' | '{' | '}' if ere => {
                out.push(c);
                at_start = matches!(c, '(' | '|');
            }
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(args: &[&str]) -> Matcher {
        match plan(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap() {
            Plan::Native(m) => m,
            Plan::External(a) => panic!("external: {a:?}"),
        }
    }

    fn external(args: &[&str]) -> bool {
        matches!(
            plan(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            Ok(Plan::External(_))
        )
    }

    #[test]
    fn basic_and_extended_syntax() {
        assert_eq!(translate("a+b", false).unwrap(), r"a\+b");
        assert_eq!(translate(r"a\+b", false).unwrap(), "a+b");
        assert_eq!(translate("a+b", true).unwrap(), "a+b");
        assert_eq!(translate(r"\(ab\)*", false).unwrap(), "(ab)*");
        assert_eq!(translate("*a", false).unwrap(), r"\*a");
        assert_eq!(translate("a^b$", false).unwrap(), r"a\^b$");
        assert_eq!(translate("[a[]", false).unwrap(), r"[a\[]");
        assert_eq!(translate("[]a]", false).unwrap(), r"[\]a]");
        assert_eq!(translate("[[:digit:]x-z]", true).unwrap(), "[[:digit:]x-z]");
        assert_eq!(translate(r"\<w\>", false).unwrap(), r"\b{start}w\b{end}");
        assert_eq!(translate(r"\(a\)\1", false), None, "back-reference");
        assert_eq!(translate("[a", false), None);
    }

    #[test]
    fn options_as_grep_reads_them() {
        let m = native(&["-iv", "FOO"]);
        assert!(m.selects("bar") && !m.selects("xfoo"));
        let m = native(&["-e", "a", "--regexp=b", "-n"]);
        assert_eq!(m.output("a\nc\nb\n").unwrap(), "1:a\n3:b\n");
        let m = native(&["-c", "-m1", "x"]);
        assert_eq!(m.output("x\nx\n").unwrap(), "1\n");
        assert!(native(&["-x", "ab"]).output("abc\n").is_none());
        let m = native(&["-w", "ab"]);
        assert!(m.selects("x ab.") && !m.selects("xab"));
        assert!(native(&["-F", "a.b"]).output("axb\n").is_none());
        assert!(native(&["--", "-v"]).selects("a -v"));
        assert!(
            native(&["a\nb"]).selects("b"),
            "a newline separates patterns"
        );
        assert!(external(&["-o", "a"]));
        assert!(external(&["--ignore", "a"]), "abbreviations are grep's");
        assert!(external(&["-P", "a"]));
        assert!(external(&["a", "/etc/hostname"]));
        let err = |a: &[&str]| plan(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(err(&["-i"]), Err(GrepArgError::NoPattern)));
        assert!(matches!(err(&["-e"]), Err(GrepArgError::MissingValue(_))));
        assert!(matches!(
            err(&["-m", "x", "a"]),
            Err(GrepArgError::BadMaxCount(_))
        ));
        assert!(
            external(&["-E", "a{"]),
            "grep's own rules for what regex refuses"
        );
    }

    #[test]
    fn lines_are_grep_s() {
        assert_eq!(lines("a\nb").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(lines("a\r\n\n").collect::<Vec<_>>(), ["a\r", ""]);
        assert_eq!(lines("").count(), 0);
    }
}
