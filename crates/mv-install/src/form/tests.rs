//! The form without a terminal: keys, validation and writing.
#![allow(clippy::unwrap_used)]

use super::answer::quote;
use super::*;

fn form() -> (tempfile::TempDir, Form) {
    let d = tempfile::tempdir().unwrap();
    let system = System {
        sys: d.path().join("sys"),
        ..System::default()
    };
    let f = Form::new(&d.path().join("a.toml"), system);
    (d, f)
}

fn press(f: &mut Form, k: Key) -> Action {
    f.key(k)
}

fn typ(f: &mut Form, s: &str) {
    for c in s.chars() {
        press(f, Key::Char(c));
    }
}

#[test]
fn quoting_is_toml() {
    assert_eq!(quote("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    assert_eq!(
        passphrase_path(Path::new("/r/a.toml")),
        Path::new("/r/a.toml.passphrase")
    );
}

#[test]
fn keys_edit_move_toggle_and_the_passphrase_is_masked() {
    let (_d, mut f) = form();
    typ(&mut f, "/dev/x");
    assert_eq!(f.disk.value, "/dev/x");
    press(&mut f, Key::Backspace);
    assert_eq!(f.disk.value, "/dev/");
    press(&mut f, Key::Down);
    press(&mut f, Key::Down);
    assert_eq!(f.current(), Row::Passphrase);
    typ(&mut f, "sekrit words");
    assert_eq!(f.passphrase.expose(), "sekrit words");
    f.go_to(Row::Topology);
    press(&mut f, Key::Right);
    assert!(f.lab);
    f.go_to(Row::Machine(1));
    typ(&mut f, " ");
    assert!(!f.machines[1].1);
    assert_eq!(f.value(Row::Passphrase).0, "************");
    assert!(!format!("{f:?}").contains("sekrit"));
    assert_eq!(press(&mut f, Key::Cancel), Action::Cancel);
}

#[test]
fn a_short_or_mismatched_passphrase_writes_nothing() {
    let (d, mut f) = form();
    f.disk.value = "/dev/x".into();
    f.source.value = "/src".into();
    typ(&mut f, "");
    f.passphrase = SecretString::new("short".into());
    assert!(!f.submit());
    assert_eq!(f.current(), Row::Passphrase);
    f.passphrase = SecretString::new("long enough".into());
    f.again = SecretString::new("long enougH".into());
    assert!(!f.submit());
    assert_eq!(f.current(), Row::Again);
    assert!(matches!(&f.status, Status::Error(m) if m.contains("do not match")));
    f.again = SecretString::new("long enough".into());
    // Now the machine check: /dev/x is no disk; the cursor goes to the disk.
    assert!(!f.submit());
    assert_eq!(f.current(), Row::Disk);
    assert!(
        matches!(&f.status, Status::Error(m) if m.contains("a.toml:3: disk: /dev/x")),
        "{:?}",
        f.status
    );
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn a_refused_answer_moves_the_cursor_to_its_field_and_a_good_one_writes_both_files() {
    let (d, mut f) = form();
    let inputs = tempfile::tempdir().unwrap();
    let disk = inputs.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let source = inputs.path().join("src.img");
    std::fs::write(&source, b"x").unwrap();
    f.disk.value = disk.display().to_string();
    f.source.value = source.display().to_string();
    f.passphrase = SecretString::new("long enough".into());
    f.again = SecretString::new("long enough".into());
    f.token.value.clear();
    f.uplink.value.clear();
    f.timezone.value = "Mars/Olympus_Mons".into();
    assert!(!f.submit());
    assert_eq!(f.current(), Row::Timezone);
    assert!(
        matches!(&f.status, Status::Error(m) if m.contains("a.toml:8: timezone: `Mars/Olympus_Mons`")),
        "{:?}",
        f.status
    );
    f.timezone.value = "UTC".into();
    f.uplink.value = "eth9".into();
    assert!(!f.submit());
    assert_eq!(f.current(), Row::Uplink);
    f.uplink.value.clear();
    f.go_to(Row::Service(0));
    typ(&mut f, " ");
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    assert!(f.submit(), "{:?}", f.status);
    let out = d.path().join("a.toml");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("services = [\"ssh\"]\n"), "{text}");
    assert!(
        !text.contains("token") && !text.contains("uplink"),
        "{text}"
    );
    let pp = passphrase_path(&out);
    assert!(text.contains(&format!("passphrase_file = \"{}\"", pp.display())));
    assert_eq!(std::fs::read_to_string(&pp).unwrap(), "long enough");
    let mut names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.toml", "a.toml.passphrase"]);
}
