//! The sub-parsers of `show`, `otp …` and `key …`.

use super::getopt::*;
use super::*;
use std::path::PathBuf;

pub(super) fn show(args: &[String], base: &Extras, u: &str) -> Result<(Extras, Cmd), ParseError> {
    let p = getopt(
        args,
        &[
            o('q', "qrcode", Arg::Optional),
            o('c', "clip", Arg::Optional),
            l("line", Arg::Required),
        ],
        u,
    )?;
    // pass takes the last of -c/-q for the line and refuses both together.
    let mut output = Output::Print;
    let (mut clip, mut qr) = (false, false);
    for (n, v) in &p.opts {
        match *n {
            "clip" => {
                clip = true;
                output = Output::Clip(line_number(v.as_deref(), u)?);
            }
            "qrcode" => {
                qr = true;
                output = Output::Qr(line_number(v.as_deref(), u)?);
            }
            _ => {}
        }
    }
    if clip && qr {
        return Err(usage_err(u, "--clip and --qrcode exclude each other"));
    }
    let line = number::<usize>(&p, "line", u)?;
    if line == Some(0) {
        return Err(usage_err(u, "--line counts from 1"));
    }
    let name = match p.operands.as_slice() {
        [] => None,
        [n] => Some(n.clone()),
        _ => return Err(usage_err(u, "give at most one pass-name")),
    };
    Ok((extras_of(&p, base), Cmd::Show { name, output, line }))
}

pub(super) const OTP_NEW: [Opt; 5] = [
    o('f', "force", Arg::No),
    o('e', "echo", Arg::No),
    o('s', "secret", Arg::No),
    o('i', "issuer", Arg::Required),
    o('a', "account", Arg::Required),
];

pub(super) fn otp_new(p: &Parsed) -> OtpNew {
    OtpNew {
        force: p.has("force"),
        echo: p.has("echo"),
        secret: p.has("secret"),
        issuer: p.last("issuer").flatten().map(str::to_string),
        account: p.last("account").flatten().map(str::to_string),
        name: p.operands.first().cloned(),
    }
}

pub(super) fn otp(args: &[String], base: &Extras) -> Result<(Extras, Cmd), ParseError> {
    let sub = args.first().map(String::as_str);
    let tail = args.get(1..).unwrap_or(&[]);
    let (extras, cmd) = match sub {
        Some("help" | "--help" | "-h") => (base.clone(), OtpCmd::Help),
        Some("version" | "--version") => (base.clone(), OtpCmd::Version),
        Some("insert" | "add") => {
            let u = usage_for("otp insert");
            let p = getopt(tail, &OTP_NEW, &u)?;
            if p.operands.len() > 1 {
                return Err(usage_err(&u, "give at most one pass-name"));
            }
            (extras_of(&p, base), OtpCmd::Insert(otp_new(&p)))
        }
        Some("append") => {
            let u = usage_for("otp append");
            let p = getopt(tail, &OTP_NEW, &u)?;
            if p.operands.len() != 1 {
                return Err(usage_err(&u, "give exactly one pass-name"));
            }
            (extras_of(&p, base), OtpCmd::Append(otp_new(&p)))
        }
        Some("uri") => {
            let u = usage_for("otp uri");
            let p = getopt(
                tail,
                &[o('c', "clip", Arg::No), o('q', "qrcode", Arg::No)],
                &u,
            )?;
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give exactly one pass-name"));
            };
            let output = match (p.has("clip"), p.has("qrcode")) {
                (true, true) => {
                    return Err(usage_err(&u, "--clip and --qrcode exclude each other"))
                }
                (true, false) => Output::Clip(1),
                (false, true) => Output::Qr(1),
                _ => Output::Print,
            };
            (
                extras_of(&p, base),
                OtpCmd::Uri {
                    output,
                    name: name.clone(),
                },
            )
        }
        Some("validate") => {
            let u = "Usage: pass otp validate [uri]";
            let p = getopt(tail, &[], u)?;
            if p.operands.len() > 1 {
                return Err(usage_err(u, "give at most one URI"));
            }
            (
                extras_of(&p, base),
                OtpCmd::Validate {
                    uri: p.operands.first().cloned(),
                },
            )
        }
        other => {
            let words = if matches!(other, Some("code" | "show")) {
                tail
            } else {
                args
            };
            let u = usage_for("otp code");
            let p = getopt(words, &[o('c', "clip", Arg::No)], &u)?;
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give exactly one pass-name"));
            };
            (
                extras_of(&p, base),
                OtpCmd::Code {
                    clip: p.has("clip"),
                    name: name.clone(),
                },
            )
        }
    };
    Ok((extras, Cmd::Otp(cmd)))
}

pub(super) fn key(args: &[String], base: &Extras) -> Result<(Extras, Cmd), ParseError> {
    let u = usage_for("key");
    let tail = args.get(1..).unwrap_or(&[]);
    let (extras, cmd) = match args.first().map(String::as_str) {
        Some("import") => {
            let p = getopt(
                tail,
                &[
                    l("unsealed", Arg::No),
                    l("key-passphrase-file", Arg::Required),
                    l("kdf-memory", Arg::Required),
                    l("kdf-iterations", Arg::Required),
                ],
                &u,
            )?;
            if !p.operands.is_empty() {
                return Err(usage_err(&u, "key import reads the key from stdin"));
            }
            (
                extras_of(&p, base),
                KeyCmd::Import {
                    unsealed: p.has("unsealed"),
                    key_passphrase_file: p.last("key-passphrase-file").flatten().map(PathBuf::from),
                    kdf_memory: number(&p, "kdf-memory", &u)?,
                    kdf_iterations: number(&p, "kdf-iterations", &u)?,
                },
            )
        }
        Some(w @ ("add" | "ls")) => {
            let p = getopt(tail, &[], &u)?;
            if !p.operands.is_empty() {
                return Err(usage_err(&u, format!("key {w} takes no arguments")));
            }
            let c = if w == "add" { KeyCmd::Add } else { KeyCmd::Ls };
            (extras_of(&p, base), c)
        }
        _ => return Err(usage_err(&u, "key needs import, add or ls")),
    };
    Ok((extras, Cmd::Key(cmd)))
}
