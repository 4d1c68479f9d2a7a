//! `pass otp …`: codes, keys and URIs (pass-otp's commands); the codes are `mv_pass`'s.

use super::entries::write_entry;
use super::keys::Ctx;
use super::prompt::{clipboard, qrcode, read_line_secret, yesno};
use super::{args::OtpCmd, args::OtpNew, args::Output, entry, new_entry, now_unix};
use crate::error::{CliError, Hinted};
use mv_core::secret::SecretString;
use mv_pass::OtpUri;

pub(super) fn otp(ctx: &Ctx<'_>, cmd: OtpCmd) -> Result<(), CliError> {
    match cmd {
        OtpCmd::Help => {
            print!("{}", super::text::OTP_USAGE);
            Ok(())
        }
        OtpCmd::Version => {
            println!("pass-otp 1.2.0 (multiverse)");
            Ok(())
        }
        OtpCmd::Code { clip, name } => {
            let name = entry(name.trim_end_matches('/'))?;
            if !ctx.store.contains(&name) {
                return Err(CliError::usage_msg(format!("{name}: passfile not found.")));
            }
            let crypto = ctx.crypto_read()?;
            if ctx.g.dry_run {
                ctx.g.say(format!(
                    "would compute the code of {name} (HOTP: and advance its counter)"
                ));
                return Ok(());
            }
            let (code, uri) = ctx.store.otp_code(&name, now_unix(), crypto.as_ref())?;
            if clip {
                return clipboard(ctx.g, code.as_bytes(), &format!("OTP code for {name}"));
            }
            if ctx.g.json {
                let v = serde_json::json!({
                    "name": name.as_str(),
                    "code": code,
                    "kind": uri.kind,
                    "remaining": uri.remaining(now_unix()),
                });
                println!("{v}");
            } else {
                println!("{code}");
            }
            Ok(())
        }
        OtpCmd::Insert(o) => otp_insert(ctx, o),
        OtpCmd::Append(o) => otp_append(ctx, o),
        OtpCmd::Uri { output, name } => {
            let name = entry(name.trim_end_matches('/'))?;
            if !ctx.store.contains(&name) {
                return Err(CliError::usage_msg("Passfile not found"));
            }
            let crypto = ctx.crypto_read()?;
            let plain = ctx.store.read(&name, crypto.as_ref())?;
            let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
            let uri = OtpUri::from_entry(text.expose()).usage()?;
            match output {
                Output::Clip(_) => {
                    return clipboard(
                        ctx.g,
                        uri.uri.expose().as_bytes(),
                        &format!("OTP key URI for {name}"),
                    )
                }
                Output::Qr(_) => return qrcode(uri.uri.expose()),
                Output::Print => {}
            }
            if ctx.g.json {
                let v = serde_json::json!({
                    "name": name.as_str(), "uri": uri.uri.expose(), "kind": uri.kind,
                    "issuer": uri.issuer, "account": uri.account, "digits": uri.digits,
                    "algorithm": uri.algorithm,
                });
                println!("{v}");
            } else {
                println!("{}", uri.uri.expose());
            }
            Ok(())
        }
        OtpCmd::Validate { uri } => {
            let uri = match uri {
                Some(u) => SecretString::new(u),
                None => read_line_secret("Enter otpauth:// URI: ", false)?,
            };
            let parsed = OtpUri::parse(uri.expose()).usage()?;
            if ctx.g.json {
                let v = serde_json::json!({"valid": true, "kind": parsed.kind, "digits": parsed.digits, "algorithm": parsed.algorithm, "issuer": parsed.issuer, "account": parsed.account});
                println!("{v}");
            } else {
                ctx.g.say("valid otpauth URI");
            }
            Ok(())
        }
    }
}

/// Reads the new OTP key of `otp insert|append`: a URI, or with `--secret` a bare base32
/// secret made into pass-otp's TOTP URI with `--issuer`/`--account`.
fn read_otp_key(o: &OtpNew, prompt: &str) -> Result<OtpUri, CliError> {
    if o.secret {
        if o.issuer.is_none() && o.account.is_none() {
            return Err(CliError::usage_msg(
                "Missing one of either '--issuer' or '--account'",
            ));
        }
        let secret = read_line_secret(&format!("Enter secret for {prompt}: "), o.echo)?;
        return mv_pass::uri_from_secret(
            secret.expose(),
            o.issuer.as_deref(),
            o.account.as_deref(),
        )
        .usage();
    }
    let uri = read_line_secret(&format!("Enter otpauth:// URI for {prompt}: "), o.echo)?;
    OtpUri::parse(uri.expose())
        .usage()
        .hint("an otpauth://totp/ISSUER:ACCOUNT?secret=BASE32… URI (or use --secret)")
}

fn otp_insert(ctx: &Ctx<'_>, o: OtpNew) -> Result<(), CliError> {
    let given = o.name.as_deref().map(new_entry).transpose()?;
    let prompt = given
        .as_ref()
        .map_or("this token".to_string(), ToString::to_string);
    if let Some(n) = &given {
        if !o.force && ctx.store.contains(n) {
            yesno(&format!("An entry already exists for {n}. Overwrite it?"))?;
        }
    }
    let uri = read_otp_key(&o, &prompt)?;
    let name = match given {
        Some(n) => n,
        None => {
            let n = entry(&uri.label_name())
                .hint("the URI's label does not make an entry name: give pass-name")?;
            yesno(&format!("Insert into {n}?"))?;
            if !o.force && ctx.store.contains(&n) {
                yesno(&format!("An entry already exists for {n}. Overwrite it?"))?;
            }
            n
        }
    };
    if ctx.g.dry_run {
        ctx.g.say(format!("would write the OTP key of {name}"));
        return Ok(());
    }
    let crypto = ctx.crypto_write()?;
    let content = SecretString::new(format!("{}\n", uri.uri.expose()));
    let msg = format!("Add OTP secret for {name} to store.");
    let what = format!("Added OTP key {name}");
    write_entry(ctx, &name, &content, &msg, crypto.as_ref(), &what)
}

fn otp_append(ctx: &Ctx<'_>, o: OtpNew) -> Result<(), CliError> {
    let name = new_entry(o.name.as_deref().unwrap_or(""))?;
    if !ctx.store.contains(&name) {
        return Err(CliError::usage_msg("Passfile not found"));
    }
    let crypto = ctx.crypto_decrypt()?;
    let plain = ctx.store.read(&name, crypto.as_ref())?;
    let old = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
    let has_otp = old.expose().lines().any(|l| l.starts_with("otpauth://"));
    if has_otp && !o.force {
        yesno(&format!(
            "An OTP secret already exists for {name}. Overwrite it?"
        ))?;
    }
    let uri = read_otp_key(&o, name.as_str())?;
    let (content, msg) = if has_otp {
        (
            mv_pass::replace_otp_line(old.expose(), uri.uri.expose()),
            format!("Replace OTP secret for {name}."),
        )
    } else {
        let mut c = SecretString::new(old.expose().trim_end_matches('\n').to_string());
        c.expose_mut().push('\n');
        c.expose_mut().push_str(uri.uri.expose());
        c.expose_mut().push('\n');
        (c, format!("Append OTP secret for {name}."))
    };
    if ctx.g.dry_run {
        ctx.g.say(format!("would add the OTP key to {name}"));
        return Ok(());
    }
    let what = format!("Added OTP key to {name}");
    write_entry(ctx, &name, &content, &msg, crypto.as_ref(), &what)
}
