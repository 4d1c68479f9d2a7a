//! What `pass help`, `pass version` and `pass otp help` print: pass's words, kept apart from
//! the code.

/// pass's banner (`pass version`), which its suite looks for in `--help`.
pub(super) const BANNER: &str = "============================================
= pass: the standard unix password manager =
=                                          =
=                  v1.7.4                  =
=       (multiverse pass, a drop-in)       =
=                                          =
=      http://www.passwordstore.org/       =
============================================";

/// `pass help`.
pub(super) fn usage() -> String {
    format!(
        "{BANNER}

Usage:
    pass init [--path=subfolder,-p subfolder] gpg-id...
        Initialize new password storage and use gpg-id for encryption.
        Selectively reencrypt existing passwords using new gpg-id.
        An empty gpg-id (with -p) removes the folder's .gpg-id.
    pass [ls] [subfolder]
        List passwords.
    pass find pass-names...
        List passwords that match pass-names.
    pass [show] [--clip[=line-number],-c[line-number]] [--line N] pass-name
        Show existing password and optionally put it on the clipboard.
    pass grep [-i|-F|-w|-x|-E] search-string
        Search for password files containing search-string when decrypted.
    pass insert [--echo,-e | --multiline,-m] [--force,-f] pass-name
        Insert new password.
    pass edit pass-name
        Insert a new password or edit an existing password using $EDITOR.
    pass generate [--no-symbols,-n] [--clip,-c] [--in-place,-i | --force,-f] pass-name [pass-length]
        Generate a new password of pass-length (or 25 if unspecified).
    pass rm [--recursive,-r] [--force,-f] pass-name
    pass mv [--force,-f] old-path new-path
    pass cp [--force,-f] old-path new-path
    pass git git-command-args...
    pass otp [code] [--clip,-c] pass-name
    pass otp insert|append [--force,-f] [--echo,-e] [--secret,-s] [--issuer,-i issuer] [--account,-a account] [pass-name]
    pass otp uri [--clip,-c | --qrcode,-q] pass-name
    pass otp validate [uri]
    pass help | version

Multiverse's own:
    pass key import [--unsealed] | key add | key ls
    pass machines | fsck [--decrypt] | audit [--max-age DAYS]
    pass lock [--all]
        Forget the secret key unlocked for this session.
    Every command also takes --gpg, --passphrase-file FILE, --json and --dry-run.
"
    )
}

/// `pass otp help`.
pub(super) const OTP_USAGE: &str = "Usage:
    pass otp [code] [--clip,-c] pass-name
        Generate an OTP code and optionally put it on the clipboard.
    pass otp insert [--force,-f] [--echo,-e] [[--secret, -s] [--issuer,-i issuer] [--account,-a account]] [pass-name]
        Prompt for and insert a new OTP key URI (or, with --secret, a bare secret); without
        pass-name, the URI's label names the entry (ISSUER/ACCOUNT).
    pass otp append [--force,-f] [--echo,-e] [[--secret, -s] [--issuer,-i issuer] [--account,-a account]] pass-name
        Append an OTP key URI to an existing entry (or replace its OTP line).
    pass otp uri [--clip,-c | --qrcode,-q] pass-name
        Display the key URI stored in pass-name.
    pass otp validate [uri]
        Test a URI (from stdin when not given) for validity.
";
