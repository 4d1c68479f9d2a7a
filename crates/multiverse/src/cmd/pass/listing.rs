//! The commands that read: `show` (and `ls`), `find`, `grep`.

use super::args::Output;
use super::entry;
use super::keys::{which, Ctx};
use super::prompt::{clipboard, qrcode};
use crate::error::CliError;
use mv_core::secret::SecretString;
use mv_pass::grep::Plan;
use mv_pass::{EntryName, StoreError, TreeStyle};
use std::io::Write;

pub(super) fn show(
    ctx: &Ctx<'_>,
    name: Option<&str>,
    output: Output,
    line: Option<usize>,
) -> Result<(), CliError> {
    // No name: the whole tree; a folder (or `NAME/`): its tree, as pass does.
    let raw = name.unwrap_or("");
    if raw.is_empty() {
        if !ctx.store.dir().is_dir() {
            return Err(CliError::usage_msg(
                "Error: password store is empty. Try \"pass init\".",
            ));
        }
        return list(ctx, None);
    }
    let trimmed = raw.trim_end_matches('/');
    if trimmed.is_empty() {
        return list(ctx, None);
    }
    let name = entry(trimmed)?;
    if raw.ends_with('/') || !ctx.store.contains(&name) {
        if name.dir_in(ctx.store.dir()).is_dir() {
            return list(ctx, Some(name.as_str()));
        }
        return Err(CliError::from(StoreError::NotFound(name.to_string())));
    }
    let crypto = ctx.crypto_decrypt()?;
    let plain = ctx.store.read(&name, crypto.as_ref())?;
    let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
    let pick = |n: usize| -> Result<SecretString, CliError> {
        text.expose()
            .split('\n')
            .nth(n - 1)
            .filter(|l| !l.is_empty())
            .map(|l| SecretString::new(l.to_string()))
            .ok_or_else(|| {
                CliError::usage_msg(format!(
                    "There is no password to put on the clipboard at line {n}."
                ))
            })
    };
    match output {
        Output::Clip(n) => {
            let what = pick(line.unwrap_or(n))?;
            return clipboard(ctx.g, what.expose().as_bytes(), name.as_str());
        }
        Output::Qr(n) => {
            let what = pick(line.unwrap_or(n))?;
            return qrcode(what.expose());
        }
        Output::Print => {}
    }
    let selected = match line {
        Some(n) => Some(
            text.expose()
                .lines()
                .nth(n - 1)
                .ok_or_else(|| CliError::usage_msg(format!("there is no line {n} in {name}")))?
                .to_string(),
        ),
        None => None,
    };
    let selected = selected.map(SecretString::new);
    let mut out = std::io::stdout().lock();
    if ctx.g.json {
        let lines: Vec<&str> = text.expose().lines().collect();
        let v = serde_json::json!({
            "name": name.as_str(),
            "password": lines.first().copied().unwrap_or(""),
            "lines": lines,
            "selected": selected.as_ref().map(|s| s.expose().as_str()),
        });
        writeln!(out, "{v}")?;
    } else if let Some(sel) = selected {
        writeln!(out, "{}", sel.expose())?;
    } else {
        out.write_all(plain.expose())?;
    }
    Ok(())
}

/// How `tree` draws on this locale: ASCII unless the character set is UTF-8 (pass runs tree,
/// which decides the same way from LC_ALL, LC_CTYPE, LANG).
fn tree_style() -> TreeStyle {
    let v = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if v.contains("utf-8") || v.contains("utf8") {
        TreeStyle::Unicode
    } else {
        TreeStyle::Ascii
    }
}

/// Prints names as `pass ls` does (its `tree` output without colours), byte for byte.
fn print_tree(title: &str, names: &[EntryName], strip: Option<&str>) -> std::io::Result<()> {
    mv_pass::write_tree(
        &mut std::io::stdout().lock(),
        title,
        names,
        strip,
        tree_style(),
    )
}

pub(super) fn list(ctx: &Ctx<'_>, sub: Option<&str>) -> Result<(), CliError> {
    let sub = sub.map(entry).transpose()?;
    let names = ctx.store.list(sub.as_ref())?;
    if ctx.g.json {
        crate::global::print_json_line(&names)?;
        return Ok(());
    }
    let title = sub
        .as_ref()
        .map_or("Password Store".to_string(), |s| s.to_string());
    print_tree(&title, &names, sub.as_ref().map(|s| s.as_str()))?;
    Ok(())
}

pub(super) fn find(ctx: &Ctx<'_>, terms: &[String]) -> Result<(), CliError> {
    let found = ctx.store.find_all(terms)?;
    if ctx.g.json {
        crate::global::print_json_line(&found.entries)?;
        return Ok(());
    }
    // Folders whose name matched are drawn too, empty or not, as tree draws them for pass.
    let mut names = found.entries;
    names.extend(found.folders);
    print_tree(&format!("Search Terms: {}", terms.join(",")), &names, None)?;
    Ok(())
}

/// `grep [GREPOPTIONS] search-string`: GNU grep's options on every decrypted entry, as pass.
/// The common options are matched in process ([`mv_pass::grep::plan`]); anything else runs
/// grep itself once per entry, the entry on its stdin (never on a command line).
pub(super) fn grep(ctx: &Ctx<'_>, args: &[String]) -> Result<(), CliError> {
    let plan = mv_pass::grep::plan(args).map_err(|e| {
        CliError::usage_msg(format!("pass grep: {e}"))
            .with_hint("Usage: pass grep [GREPOPTIONS] search-string")
    })?;
    let crypto = ctx.crypto_decrypt()?;
    let (report, external) = match &plan {
        Plan::Native(m) => (ctx.store.grep_matcher(m, crypto.as_ref())?, None),
        Plan::External(gargs) => {
            if !which("grep") {
                return Err(CliError::usage_msg(format!(
                    "pass grep: {}: these grep options need grep, which is not on PATH",
                    gargs.join(" ")
                ))
                .with_hint("the options -i -v -w -x -c -n -m -e -E -F -G work without grep"));
            }
            let found = ctx.store.grep_external(gargs, crypto.as_ref())?;
            (found.report, Some(found.refusals))
        }
    };
    // grep refused its arguments (a bad pattern, an unknown option): once, as grep said it.
    if let Some(f) = external.as_ref().filter(|f| !f.is_empty()) {
        return Err(CliError::usage_msg(format!(
            "pass grep: {}",
            f.iter().cloned().collect::<Vec<_>>().join("; ")
        ))
        .with_hint("Usage: pass grep [GREPOPTIONS] search-string"));
    }
    let mut out = std::io::stdout().lock();
    if ctx.g.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).map_err(CliError::failure)?
        )?;
    } else {
        let count = matches!(&plan, Plan::Native(m) if m.selection.count);
        let numbers = matches!(&plan, Plan::Native(m) if m.selection.line_number);
        for hit in &report.hits {
            writeln!(out, "{}:", hit.name)?;
            // pass prints `$(grep …)` with echo: trailing empty lines vanish.
            let mut block = String::new();
            if count {
                block = hit.lines.len().to_string();
            } else {
                for l in &hit.lines {
                    if let (true, Some(n)) = (numbers, l.line) {
                        block.push_str(&format!("{n}:"));
                    }
                    block.push_str(&l.text);
                    block.push('\n');
                }
            }
            writeln!(out, "{}", block.trim_end_matches('\n'))?;
        }
    }
    for e in &report.errors {
        eprintln!("multiverse: warning: {}: {}", e.file.display(), e.error);
    }
    if !report.errors.is_empty() {
        return Err(CliError::failure_msg(format!(
            "{} of {} entries could not be read (listed above); the others were searched",
            report.errors.len(),
            report.searched
        )));
    }
    Ok(())
}
