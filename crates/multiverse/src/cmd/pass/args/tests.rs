//! The parser's cases: pass's own behaviour, word for word.

use super::*;

fn p(words: &[&str]) -> Result<Invocation, ParseError> {
    let v: Vec<String> = words.iter().map(|s| s.to_string()).collect();
    parse(&v)
}
fn cmd(words: &[&str]) -> Cmd {
    p(words).unwrap().command
}

#[test]
fn bare_pass_lists_and_a_name_shows() {
    let list = Cmd::Show {
        name: None,
        output: Output::Print,
        line: None,
    };
    assert_eq!(cmd(&[]), list);
    assert_eq!(cmd(&["--gpg"]), list);
    assert_eq!(cmd(&["ls"]), list);
    assert_eq!(
        cmd(&["web/mail"]),
        Cmd::Show {
            name: Some("web/mail".into()),
            output: Output::Print,
            line: None
        }
    );
    assert_eq!(
        cmd(&["-c2", "web"]),
        Cmd::Show {
            name: Some("web".into()),
            output: Output::Clip(2),
            line: None
        }
    );
    assert_eq!(
        cmd(&["show", "web", "--clip=3"]),
        Cmd::Show {
            name: Some("web".into()),
            output: Output::Clip(3),
            line: None
        }
    );
    // An optional value never takes the next word.
    assert_eq!(
        cmd(&["show", "-c", "2"]),
        Cmd::Show {
            name: Some("2".into()),
            output: Output::Clip(1),
            line: None
        }
    );
    assert!(p(&["show", "-c", "-q", "x"]).is_err());
    assert!(p(&["show", "--clip=x", "a"]).is_err());
}

#[test]
fn unknown_flags_are_errors_never_names() {
    for bad in [
        &["insert", "-x", "a"][..],
        &["generate", "--no-symbolz", "a"],
        &["otp", "insert", "-z"],
        &["rm", "--bogus", "a"],
        &["show", "-z", "a"],
        &["-z"],
        &["mv", "-r", "a", "b"],
    ] {
        let e = p(bad).unwrap_err();
        assert!(e.usage.starts_with("Usage: pass"), "{bad:?}: {e:?}");
    }
    // A unique prefix of a long option is that option, like getopt.
    assert!(matches!(
        cmd(&["generate", "--no-symbol", "a"][..]),
        Cmd::Generate { no_symbols: true, ref name, .. } if name == "a"
    ));
}

#[test]
fn options_mix_with_operands_and_dash_dash_ends_them() {
    assert_eq!(
        cmd(&["insert", "a", "-mf"]),
        Cmd::Insert {
            echo: false,
            multiline: true,
            force: true,
            name: "a".into()
        }
    );
    assert_eq!(
        cmd(&["insert", "-e", "--", "-dash"]),
        Cmd::Insert {
            echo: true,
            multiline: false,
            force: false,
            name: "-dash".into()
        }
    );
    assert!(p(&["insert", "-e", "-m", "a"]).is_err());
    assert!(p(&["insert", "a", "b"]).is_err());
    assert_eq!(
        cmd(&["init", "-pteam", "K1", "K2"]),
        Cmd::Init {
            path: Some("team".into()),
            ids: vec!["K1".into(), "K2".into()]
        }
    );
    assert_eq!(
        cmd(&["init", "--path", "team", ""]),
        Cmd::Init {
            path: Some("team".into()),
            ids: vec![String::new()]
        }
    );
    assert!(p(&["generate", "-if", "a"]).is_err());
    assert!(matches!(
        cmd(&["generate", "--in", "a", "12"]),
        Cmd::Generate { in_place: true, ref length, .. } if length.as_deref() == Some("12")
    ));
    assert_eq!(
        cmd(&["git", "log", "--oneline", "-n1"]),
        Cmd::Git {
            args: vec!["log".into(), "--oneline".into(), "-n1".into()]
        }
    );
}

#[test]
fn extras_anywhere_and_otp() {
    let i = p(&["show", "--json", "x", "--gpg"]).unwrap();
    assert!(i.extras.json && i.extras.gpg);
    let i = p(&["--passphrase-file", "/f", "grep", "-i", "x"]).unwrap();
    assert_eq!(i.extras.passphrase_file, Some(PathBuf::from("/f")));
    assert_eq!(
        i.command,
        Cmd::Grep {
            args: vec!["-i".into(), "x".into()]
        }
    );
    let i = p(&["grep", "-e", "--json", "--json", "--", "--gpg"]).unwrap();
    assert!(i.extras.json && !i.extras.gpg);
    assert_eq!(
        i.command,
        Cmd::Grep {
            args: vec!["-e".into(), "--json".into(), "--".into(), "--gpg".into()]
        }
    );
    assert_eq!(
        cmd(&["otp", "insert", "-s", "-i", "Iss", "--account=me", "n"]),
        Cmd::Otp(OtpCmd::Insert(OtpNew {
            force: false,
            echo: false,
            secret: true,
            issuer: Some("Iss".into()),
            account: Some("me".into()),
            name: Some("n".into())
        }))
    );
    assert_eq!(
        cmd(&["otp", "-c", "n"]),
        Cmd::Otp(OtpCmd::Code {
            clip: true,
            name: "n".into()
        })
    );
    assert_eq!(
        cmd(&["otp", "insert"]),
        Cmd::Otp(OtpCmd::Insert(OtpNew::default()))
    );
    assert!(p(&["otp", "append"]).is_err());
    assert!(p(&["otp", "insert", "-e", "-x"]).is_err());
    assert_eq!(cmd(&["lock"]), Cmd::Lock { all: false });
    assert_eq!(cmd(&["lock", "--all"]), Cmd::Lock { all: true });
}
