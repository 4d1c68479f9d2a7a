//! Tests of reading and validating `multiverse.toml`.
#![allow(clippy::unwrap_used)]

use super::*;

fn parse(text: &str) -> Result<Topology, ConfigError> {
    Topology::parse(text, Path::new("multiverse.toml"))
}

#[test]
fn default_topology_is_design_md() {
    let t = Topology::default_topology();
    let names: Vec<&str> = t.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "host.multiverse",
            "universe.router.multiverse",
            "galaxy.router.multiverse",
            "star.router.multiverse",
            "controller.multiverse",
            "mail.service.multiverse",
            "browser.app.multiverse"
        ]
    );
    let star = t
        .machine(&MachineName::parse("star.router.multiverse").unwrap())
        .unwrap();
    let r = star.router.as_ref().unwrap();
    assert_eq!(r.role, RouterRole::Star);
    assert_eq!(r.serves, ["net2"]);
    assert_eq!(r.upstream.as_deref(), Some("net1"));
    assert_eq!(t.network("net1").unwrap().subnet.to_string(), "10.1.1.0/24");
    let order: Vec<&str> = t.start_order().iter().map(|m| m.name.short()).collect();
    assert_eq!(
        order,
        [
            "universe",
            "galaxy",
            "star",
            "controller",
            "mail",
            "browser"
        ]
    );
    assert_eq!(
        Topology::default_for_arch(Arch::Aarch64).machines[4].arch,
        Arch::Aarch64
    );
}

#[test]
fn to_toml_round_trips() {
    let t = Topology::default_topology();
    let text = t.to_toml().unwrap();
    assert_eq!(parse(&text).unwrap(), t);
}

fn base() -> String {
    DEFAULT_TOML.to_string()
}

/// The 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let off = text.find(needle).unwrap();
    text[..off].matches('\n').count() + 1
}

/// The 1-based line of the last occurrence of `needle` (where a duplicate is reported).
fn last_line_of(text: &str, needle: &str) -> usize {
    let off = text.rfind(needle).unwrap();
    text[..off].matches('\n').count() + 1
}

/// Parses `text`, which must fail with `problem`, reported at `line`; returns the error.
fn expect_at(text: &str, problem: Problem, line: usize) -> ConfigError {
    let e = parse(text).unwrap_err();
    assert_eq!(e.problem(), Some(problem), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("multiverse.toml:{line}: ")),
        "{e}"
    );
    e
}

/// Parses `text`, which must fail with `problem` in one line naming the line of `needle`.
fn expect(text: &str, problem: Problem, needle: &str) {
    let e = expect_at(text, problem, line_of(text, needle));
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}

#[test]
fn unknown_type() {
    let t = base().replace("type = \"service\"", "type = \"server\"");
    expect(&t, Problem::UnknownValue, "type = \"server\"");
}

#[test]
fn malformed_fqdn() {
    let t = base().replace("\"mail.service.multiverse\"", "\"Mail\"");
    expect(&t, Problem::BadName, "\"Mail\"");
    let t = base().replace("\"mail.service.multiverse\"", "\"mail\"");
    expect(&t, Problem::BadName, "\"mail\"");
}

#[test]
fn duplicate_names() {
    let t = base().replace("\"browser.app.multiverse\"", "\"mail.service.multiverse\"");
    // The second occurrence is the one reported.
    let line = last_line_of(&t, "name = \"mail.service.multiverse\"");
    expect_at(&t, Problem::Duplicate, line);
}

#[test]
fn network_no_router_serves() {
    let t = base().replace(
        "served_by = \"star.router.multiverse\"",
        "served_by = \"mail.service.multiverse\"",
    );
    expect(
        &t,
        Problem::UnservedNetwork,
        "served_by = \"mail.service.multiverse\"",
    );
    let t = base().replace(
        "served_by = \"star.router.multiverse\"",
        "served_by = \"nobody.router.multiverse\"",
    );
    expect(
        &t,
        Problem::UnservedNetwork,
        "served_by = \"nobody.router.multiverse\"",
    );
}

#[test]
fn malformed_pci() {
    let t = base().replace("\"0000:03:00.0\"", "\"0000:03:00.9\"");
    expect(&t, Problem::BadAddress, "\"0000:03:00.9\"");
}

#[test]
fn pci_claimed_twice() {
    let t = base().replace("\"0000:00:14.0\"", "\"0000:03:00.0\"");
    let line = line_of(&t, "pci = [\"0000:01:00.0\"");
    let e = expect_at(&t, Problem::PciClaimedTwice, line);
    assert!(e.to_string().contains("universe.router.multiverse"));
}

#[test]
fn unknown_field() {
    let t = base().replace("gpu = true", "gpu = true\ncolour = \"red\"");
    expect(&t, Problem::UnknownField, "colour");
}

#[test]
fn unknown_network_and_bad_address() {
    let t = base().replace("{ network = \"net2\" }", "{ network = \"net9\" }");
    expect(&t, Problem::UnknownNetwork, "\"net9\"");
    let t = base().replace("\"10.2.2.20\"", "\"10.9.9.9\"");
    expect(&t, Problem::Inconsistent, "\"10.9.9.9\"");
    let t = base().replace("\"10.2.2.20\"", "\"10.2.2.10\"");
    let line = last_line_of(&t, "address = \"10.2.2.10\"");
    expect_at(&t, Problem::Duplicate, line);
}

#[test]
fn router_needs_role_and_only_routers_take_one() {
    let t = base().replace("router = { role = \"universe\" }\n", "");
    let e = parse(&t).unwrap_err();
    assert_eq!(e.problem(), Some(Problem::Inconsistent), "{e}");
    let t = base().replace("gpu = true", "gpu = true\nrouter = { role = \"star\" }");
    expect(&t, Problem::Inconsistent, "router = { role = \"star\" }");
}

#[test]
fn minimal_file_gets_defaults() {
    let t = parse(
        r#"
[[networks]]
name = "lan"
bridge = "br-lan"
subnet = "192.168.50.0/24"
served_by = "gw.router.test"

[[machines]]
name = "gw.router.test"
type = "router"
router = { role = "universe" }
networks = [{ network = "lan" }]

[[machines]]
name = "work.test"
type = "application"
networks = [{ network = "lan" }]
"#,
    )
    .unwrap();
    assert_eq!(t.host.name.as_str(), "host.multiverse");
    let gw = &t.machines[1];
    assert_eq!(gw.memory_mib, 256);
    assert_eq!(gw.os, Os::Alpine);
    assert_eq!(
        gw.networks[0].address,
        Some("192.168.50.1".parse().unwrap())
    );
    let w = &t.machines[2];
    assert_eq!(w.os, Os::Debian);
    assert_eq!(w.disks[0].base.as_deref(), Some("debian"));
    assert_eq!(w.networks[0].mac, super::addr::derived_mac("work.test/lan"));
}

#[test]
fn syntax_error_has_a_line() {
    let e = parse("[host]\nname = \n").unwrap_err();
    assert!(e.to_string().starts_with("multiverse.toml:2: "), "{e}");
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(s in "(?s).{0,400}") {
            fuzz_entry(s.as_bytes());
        }

        /// Mutations of the real default file reach deep into validation.
        #[test]
        fn mutated_default_never_panics(pos in 0usize..DEFAULT_TOML.len(), len in 0usize..8, repl in "[a-z0-9.:=\"\\[\\] \n]{0,8}") {
            let mut b = DEFAULT_TOML.as_bytes().to_vec();
            let end = (pos + len).min(b.len());
            b.splice(pos..end, repl.bytes());
            fuzz_entry(&b);
        }
    }

    #[test]
    fn default_passes_the_fuzz_invariants() {
        fuzz_entry(DEFAULT_TOML.as_bytes());
    }
}

#[test]
fn errors_inside_inline_tables_name_their_line() {
    let t = base().replace(
        "router = { role = \"star\", upstream = \"net1\" }",
        "router = { role = \"star\", upstream = \"net1\", colour = 1 }",
    );
    expect(&t, Problem::UnknownField, "colour = 1");
    let t = base().replace(
        "router = { role = \"star\", upstream = \"net1\" }",
        "router = { role = \"star\", upstream = \"net9\" }",
    );
    expect(&t, Problem::UnknownNetwork, "upstream = \"net9\"");
    let t = base().replace("vpn = \"wireguard\"", "vpn = \"ipsec\"");
    expect(&t, Problem::UnknownValue, "vpn = \"ipsec\"");
    let t = base().replace(
        "{ role = \"star\",",
        "{ role = \"star\", vpn = \"openvpn\",",
    );
    expect(&t, Problem::Inconsistent, "vpn = \"openvpn\"");
}

#[test]
fn bridges_and_subnets_are_checked() {
    let t = base().replace("bridge = \"mvbr1\"", "bridge = \"mvbr0\"");
    expect(
        &t,
        Problem::Duplicate,
        "bridge = \"mvbr0\"\nsubnet = \"10.1.1.0/24\"",
    );
    let t = base().replace("bridge = \"mvbr1\"", "bridge = \"a-very-long-bridge\"");
    expect(&t, Problem::Syntax, "a-very-long-bridge");
    let t = base().replace("10.1.1.0/24", "10.1.1.0/33");
    expect(&t, Problem::BadAddress, "10.1.1.0/33");
}

#[test]
fn accel_defaults_to_kvm_and_is_validated() {
    assert_eq!(Topology::default_topology().host.accel, Accel::Kvm);
    let t = parse(&base().replacen("accel = \"kvm\"", "", 1)).unwrap();
    assert_eq!(t.host.accel, Accel::Kvm);
    let t = parse(&base().replacen("accel = \"kvm\"", "accel = \"tcg\"", 1)).unwrap();
    assert_eq!(t.host.accel, Accel::Tcg);
    assert_eq!(parse(&t.to_toml().unwrap()).unwrap(), t);
    let bad = base().replacen("accel = \"kvm\"", "accel = \"hvf\"", 1);
    expect(&bad, Problem::UnknownValue, "accel = \"hvf\"");
    assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
    assert!("TCG"
        .parse::<Accel>()
        .unwrap_err()
        .contains("expected kvm or tcg"));
}

/// The lab variant: the default topology's machines and networks plus `uplink`, all Debian, the
/// universe on a virtio upstream, no passthrough, and the accelerator asked for.
#[test]
fn lab_is_the_default_topology_without_passthrough() {
    let def = Topology::default_topology();
    let lab = parse(&lab_toml(Arch::X86_64, Accel::Tcg)).unwrap();
    assert_eq!(lab.host.accel, Accel::Tcg);
    assert_eq!(
        parse(&lab_toml(Arch::Aarch64, Accel::Kvm))
            .unwrap()
            .host
            .arch,
        Arch::Aarch64
    );
    let names = |t: &Topology| {
        t.machines
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&lab), names(&def));
    // Every lab VM boots the BIOS base image, the controller included.
    assert!(lab.machines.iter().filter(|m| m.is_vm()).all(|m| !m.uefi()));
    assert!(def
        .machines
        .iter()
        .any(|m| m.kind == MachineType::Controller && m.uefi()));
    let arm = parse(&lab_toml(Arch::Aarch64, Accel::Kvm)).unwrap();
    assert!(arm.machines.iter().filter(|m| m.is_vm()).all(|m| m.uefi()));
    let bad =
        lab_toml(Arch::X86_64, Accel::Tcg).replacen("arch = \"x86_64\"", "arch = \"aarch64\"", 1);
    expect(&bad, Problem::Inconsistent, "firmware = \"bios\"");
    for m in &lab.machines {
        let d = def.machine(&m.name).unwrap();
        assert_eq!(m.os, Os::Debian, "{}", m.name);
        assert!(m.pci.is_empty() && m.usb.is_empty() && !m.gpu, "{}", m.name);
        assert!(
            m.memory_mib >= 384 || m.kind == MachineType::Host,
            "{}",
            m.name
        );
        assert_eq!(m.autostart, d.autostart, "{}", m.name);
        let nets: Vec<_> = m
            .networks
            .iter()
            .filter(|a| a.network != "uplink")
            .collect();
        let def_nets: Vec<_> = d.networks.iter().collect();
        assert_eq!(nets, def_nets, "{}: same NICs, addresses and MACs", m.name);
    }
    let uplink = lab.network("uplink").unwrap();
    assert_eq!(uplink.served_by, None);
    let universe = lab
        .machine(&MachineName::parse("universe.router.multiverse").unwrap())
        .unwrap();
    let r = universe.router.as_ref().unwrap();
    assert_eq!(r.upstream.as_deref(), Some("uplink"));
    assert_eq!(r.serves, ["net0"]);
    assert_eq!(lab.start_order().len(), def.start_order().len());
    assert_eq!(parse(&lab.to_toml().unwrap()).unwrap(), lab);
}

/// A network may go unserved (an uplink); a machine on it gets no address unless it sets one.
#[test]
fn unserved_network_is_an_uplink() {
    let text = base().replacen(
        "networks = [{ network = \"net2\" }]",
        "networks = [{ network = \"net2\" }, { network = \"up\" }]",
        1,
    )
        + "\n[[networks]]\nname = \"up\"\nbridge = \"mvbrup\"\nsubnet = \"10.255.0.0/24\"\n";
    let t = parse(&text).unwrap();
    assert_eq!(t.network("up").unwrap().served_by, None);
    let browser = t
        .machine(&MachineName::parse("browser.app.multiverse").unwrap())
        .unwrap();
    assert_eq!(browser.networks[1].network, "up");
    assert_eq!(browser.networks[1].address, None);
}

#[test]
fn identity_epochs_are_read_and_checked_with_their_line() {
    let base = "[host]\nname = \"h.multiverse\"\n\n[[machines]]\nname = \"a.multiverse\"\ntype = \"service\"\n";
    let good =
        format!("{base}\n# rotated\n[identity.epochs]\n\"a.multiverse\" = 1\n\"@user\" = 2\n");
    let t = Topology::parse(&good, Path::new("m.toml")).unwrap();
    let a = mv_core::IdentityName::parse("a.multiverse").unwrap();
    assert_eq!(t.epochs.get(&a), 1);
    assert_eq!(
        t.epochs
            .get(&mv_core::IdentityName::parse("@user").unwrap()),
        2
    );
    let back = Topology::parse(&t.to_toml().unwrap(), Path::new("m.toml")).unwrap();
    assert_eq!(back, t);
    for (bad, want) in [
        ("\"a.multiverse\" = 4294967296", "m.toml:10: "),
        ("\"a.multiverse\" = -1", "m.toml:10: "),
        ("\"nobody.multiverse\" = 1", "m.toml:10: "),
        ("\"Bad Name\" = 1", "m.toml:10: "),
    ] {
        let text = format!("{base}\n# rotated\n[identity.epochs]\n{bad}\n");
        let e = Topology::parse(&text, Path::new("m.toml")).unwrap_err();
        assert!(e.to_string().starts_with(want), "{bad}: {e}");
    }
}

/// `onion = [..]` on a service machine: published on the star router that serves the network of
/// its static address; every mistake is one line naming the line of the value.
#[test]
fn onion_ports_are_checked_and_published_on_the_star() {
    let mail = "networks = [{ network = \"net2\", address = \"10.2.2.20\" }]";
    let with = |ports: &str| base().replacen(mail, &format!("{mail}\nonion = {ports}"), 1);
    let t = parse(&with("[80, 25]")).unwrap();
    let star = MachineName::parse("star.router.multiverse").unwrap();
    let services = t.onion_services(&star);
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].machine.as_str(), "mail.service.multiverse");
    assert_eq!(services[0].address.to_string(), "10.2.2.20");
    assert_eq!(services[0].ports, [80, 25]);
    let galaxy = MachineName::parse("galaxy.router.multiverse").unwrap();
    assert!(t.onion_services(&galaxy).is_empty());
    assert_eq!(parse(&t.to_toml().unwrap()).unwrap(), t);
    assert!(parse(&with("[]")).unwrap().onion_services(&star).is_empty());

    for bad in ["0", "65536", "-1"] {
        let text = with(&format!("[\n  80,\n  {bad},\n]"));
        let e = expect_at(
            &text,
            Problem::Inconsistent,
            line_of(&text, &format!("  {bad},")),
        );
        assert!(e.to_string().contains("is not a port (1-65535)"), "{e}");
    }
    let text = with("[\n  80,\n  80,\n]");
    let e = expect_at(&text, Problem::Duplicate, last_line_of(&text, "  80,"));
    assert!(
        e.to_string().contains("onion port 80 is listed twice"),
        "{e}"
    );
    // Only service machines publish.
    let text = base().replacen(
        "networks = [{ network = \"net2\" }]",
        "networks = [{ network = \"net2\" }]\nonion = [80]",
        1,
    );
    let e = expect_at(&text, Problem::Inconsistent, line_of(&text, "onion = [80]"));
    assert!(
        e.to_string()
            .contains("is of type application; only service machines publish onion services"),
        "{e}"
    );
    // A service without a static address on the star's network has nowhere to be forwarded to.
    let text = with("[80]").replacen(mail, "networks = [{ network = \"net2\" }]", 1);
    let e = expect_at(&text, Problem::Inconsistent, line_of(&text, "onion = [80]"));
    assert!(
        e.to_string()
            .contains("no static address on a network served by the star"),
        "{e}"
    );
    // A string is a syntax error with a line too.
    let text = with("[\"80\"]");
    expect(&text, Problem::Syntax, "onion = [\"80\"]");
}

#[test]
fn disk_encryption_defaults_to_luks_for_the_controller_only() {
    let def = parse(&base()).unwrap();
    for m in def.machines.iter().filter(|m| m.is_vm()) {
        assert_eq!(
            m.disk_encrypted(),
            m.kind == MachineType::Controller,
            "{}",
            m.name
        );
        assert_eq!(m.disk_encryption, None, "the default is not written");
    }
    let lab = parse(&lab_toml(Arch::X86_64, Accel::Tcg)).unwrap();
    let ctl = MachineName::parse("controller.multiverse").unwrap();
    assert!(lab.machine(&ctl).unwrap().disk_encrypted());
    // Set per machine, both ways.
    let text = base()
        .replacen(
            "disks = [{ base = \"debian\", size_gib = 64 }]",
            "disks = [{ base = \"debian\", size_gib = 64 }]\ndisk_encryption = \"none\"",
            1,
        )
        .replacen(
            "autostart = 5\n",
            "autostart = 5\ndisk_encryption = \"luks\"\n",
            1,
        );
    let t = parse(&text).unwrap();
    assert!(!t.machine(&ctl).unwrap().disk_encrypted());
    let mail = MachineName::parse("mail.service.multiverse").unwrap();
    let m = t.machine(&mail).unwrap();
    assert!(m.disk_encrypted());
    assert_eq!(m.disk_encryption, Some(DiskEncryption::Luks));
    // An unknown value names its line.
    let bad = base().replacen(
        "autostart = 5\n",
        "autostart = 5\ndisk_encryption = \"aes\"\n",
        1,
    );
    let e = parse(&bad).unwrap_err().to_string();
    let line = line_of(&bad, "disk_encryption = \"aes\"");
    assert!(
        e.starts_with(&format!("multiverse.toml:{line}: ")) && !e.contains('\n'),
        "{e}"
    );
}
