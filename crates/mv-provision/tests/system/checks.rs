//! Every rendered router configuration passes its own tool's check (`nft -c` in a network
//! namespace, `dnsmasq --test`, `tor --verify-config` with DisableNetwork, `sshd -t`,
//! `wg-quick strip`), for both OSes; and a broken one is refused with the tool's words.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{topology, Fixture};
use mv_provision::{check_all, check_file, render, CheckError, Contents, Engine, Os};

fn tools_for(os: Os) -> Vec<(String, Vec<(String, &'static str)>)> {
    for t in ["nft", "dnsmasq", "tor", "sshd", "wg-quick", "unshare"] {
        mv_testkit::require_tool(t);
    }
    let engine = Engine::embedded();
    let mut out = Vec::new();
    for spec in topology(os) {
        let d = render(&spec, &engine, &Fixture).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let checked =
            check_all(&d, scratch.path()).unwrap_or_else(|e| panic!("{} ({os}): {e}", d.machine));
        out.push((
            d.machine,
            checked.into_iter().map(|c| (c.path, c.tool)).collect(),
        ));
    }
    out
}

fn expect(all: &[(String, Vec<(String, &'static str)>)], machine: &str, tools: &[&str]) {
    let (_, checked) = all.iter().find(|(m, _)| m == machine).unwrap();
    let got: Vec<&str> = checked.iter().map(|(_, t)| *t).collect();
    for t in tools {
        assert!(got.contains(t), "{machine}: {t} not checked (got {got:?})");
    }
}

#[test]
fn debian_configs_pass_their_tools() {
    let all = tools_for(Os::Debian);
    expect(
        &all,
        "universe.router.multiverse",
        &["sshd", "dnsmasq", "nft"],
    );
    expect(
        &all,
        "galaxy.router.multiverse",
        &["sshd", "dnsmasq", "nft", "wg-quick"],
    );
    expect(
        &all,
        "star.router.multiverse",
        &["sshd", "dnsmasq", "nft", "tor"],
    );
    expect(&all, "mail.service.multiverse", &["sshd"]);
}

#[test]
fn alpine_configs_pass_their_tools() {
    let all = tools_for(Os::Alpine);
    expect(
        &all,
        "universe.router.multiverse",
        &["sshd", "dnsmasq", "nft"],
    );
    expect(
        &all,
        "galaxy.router.multiverse",
        &["sshd", "dnsmasq", "nft", "wg-quick"],
    );
    expect(
        &all,
        "star.router.multiverse",
        &["sshd", "dnsmasq", "nft", "tor"],
    );
}

#[test]
fn broken_configs_are_refused_with_the_tools_words() {
    let engine = Engine::embedded();
    let spec = topology(Os::Debian)
        .into_iter()
        .find(|m| m.name.as_str() == "star.router.multiverse")
        .unwrap();
    let d = render(&spec, &engine, &Fixture).unwrap();
    let mut cases = 0;
    for f in &d.files {
        let Contents::Public(text) = &f.contents else {
            continue;
        };
        let broken = match f.path.as_str() {
            "/etc/nftables.conf" => text.replace("policy drop;", "policy dorp;"),
            "/etc/dnsmasq.conf" => format!("{text}dhcp-range=nonsense\n"),
            "/etc/tor/torrc" => format!("{text}TransPort notaport:x\n"),
            "/etc/ssh/sshd_config" => format!("{text}PermitRootLogin sometimes\n"),
            _ => continue,
        };
        let mut bad = f.clone();
        bad.contents = Contents::Public(broken);
        let scratch = tempfile::tempdir().unwrap();
        match check_file(&bad, &d.files, scratch.path()) {
            Err(CheckError::Refused { path, message, .. }) => {
                assert_eq!(path, f.path);
                assert!(!message.is_empty());
                cases += 1;
            }
            other => panic!("{}: expected a refusal, got {other:?}", f.path),
        }
    }
    assert_eq!(cases, 4);
}

#[test]
fn openvpn_galaxy_passes_openvpn_and_a_bad_option_is_refused() {
    mv_testkit::require_tool("openvpn");
    let engine = Engine::embedded();
    for os in [Os::Alpine, Os::Debian] {
        let d = render(
            &common::galaxy(os, mv_provision::VpnKind::Openvpn),
            &engine,
            &Fixture,
        )
        .unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let checked = check_all(&d, scratch.path()).unwrap();
        assert!(
            checked.iter().any(|c| c.tool == "openvpn"),
            "{os}: {checked:?}"
        );
        // OpenVPN opens its management socket before it stops at the stand-in CA: the check's
        // is in the scratch folder, never the machine's path on this host.
        assert!(
            !std::path::Path::new(mv_provision::OPENVPN_MANAGEMENT_SOCKET).exists(),
            "the check made {}",
            mv_provision::OPENVPN_MANAGEMENT_SOCKET
        );
        let conf = d
            .files
            .iter()
            .find(|f| f.path.ends_with(".conf") && f.path.contains("openvpn"))
            .unwrap();
        let mut bad = conf.clone();
        let Contents::Public(text) = &conf.contents else {
            panic!("public")
        };
        bad.contents = Contents::Public(format!("{text}bogus-option 1\n"));
        let scratch = tempfile::tempdir().unwrap();
        match check_file(&bad, &d.files, scratch.path()) {
            Err(CheckError::Refused { message, .. }) => {
                assert!(message.contains("bogus-option"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
