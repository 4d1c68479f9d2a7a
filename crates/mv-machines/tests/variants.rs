//! Every template branch (USB passthrough, controller without GPU, extra disks, emulated foreign
//! arch, VPN options, AMD host) renders XML that `virt-xml-validate` accepts, on both host arches.
#![allow(clippy::unwrap_used)]

use mv_machines::{render_plan, Output, Topology, Tree, DEFAULT_TOML};
use std::path::Path;
use std::process::Command;

const EXTRA: &str = r#"
[[machines]]
name = "desk.multiverse"
type = "controller"
arch = "aarch64"
gpu = false
usb = ["1d6b:0002", "046d:c52b"]
pci = ["0000:05:00.0"]
networks = [{ network = "net2", mac = "52:54:00:aa:bb:cc" }]
disks = [{ base = "debian", size_gib = 20 }, { size_gib = 100 }]

[[machines]]
name = "game.app.multiverse"
type = "application"
gpu = true
pci = ["0000:06:00.0"]
usb = ["054c:09cc"]
networks = [{ network = "net2" }, { network = "net1" }]

[[machines]]
name = "vpn2.router.multiverse"
type = "router"
os = "debian"
router = { role = "galaxy", vpn = "openvpn", upstream = "net0", serves = ["net3"] }
networks = [{ network = "net0", address = "10.0.0.3" }, { network = "net3" }]
disk_encryption = "luks"

[[networks]]
name = "net3"
bridge = "mvbr3"
subnet = "10.3.3.0/24"
served_by = "vpn2.router.multiverse"
"#;

#[test]
fn variants_pass_virt_xml_validate() {
    let tool = mv_testkit::require_tool("virt-xml-validate");
    let d = tempfile::tempdir().unwrap();
    for (host_arch, vendor) in [("x86_64", "amd"), ("aarch64", "intel")] {
        let text = DEFAULT_TOML
            .replacen("arch = \"x86_64\"", &format!("arch = \"{host_arch}\""), 1)
            .replacen(
                "cpu_vendor = \"intel\"",
                &format!("cpu_vendor = \"{vendor}\""),
                1,
            )
            + EXTRA;
        let t = Topology::parse(&text, Path::new("variants.toml")).unwrap();
        let tree = Tree::new("/var/multiverse");
        let outs = render_plan(&tree, &t).unwrap();
        let mut checked = 0;
        let mut secrets = 0;
        for o in outs {
            let Output::File { path, contents } = o else {
                continue;
            };
            let kind = match path.file_name().unwrap().to_str().unwrap() {
                "domain.xml" => "domain",
                "pool.xml" => "storagepool",
                "machine.toml" => continue,
                "luks-secret.xml" => "secret",
                _ => "network",
            };
            let f = d.path().join(format!("{host_arch}-{checked}.xml"));
            std::fs::write(&f, &contents).unwrap();
            mv_testkit::run_ok(Command::new(&tool).arg(&f).arg(kind));
            if path.ends_with("desk.multiverse/domain.xml") {
                assert!(contents.contains(r#"<controller type="usb" model="qemu-xhci"/>"#));
                assert!(contents.contains(r#"<vendor id="0x046d"/>"#));
                assert!(contents.contains(r#"volume="desk.multiverse-1.qcow2""#));
                assert!(contents.contains(r#"<target dev="vdb" bus="virtio"/>"#));
                assert!(contents.contains(r#"<graphics type="vnc">"#));
                assert!(contents.contains("52:54:00:aa:bb:cc"));
                let emulated = host_arch == "x86_64";
                assert_eq!(contents.contains(r#"<domain type="qemu">"#), emulated);
            }
            // Encrypted: the controllers (the default) and the router that asks for it; every
            // disk of theirs names the machine's secret, and nothing else has one.
            let encrypted = [
                "controller.multiverse",
                "desk.multiverse",
                "vpn2.router.multiverse",
            ];
            if path.ends_with("domain.xml") {
                let machine = path
                    .parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap();
                let disks = contents.matches("<disk ").count();
                let keyed = contents.matches(r#"<encryption format="luks">"#).count();
                if encrypted.contains(&machine) {
                    assert!(disks > 0 && keyed == disks, "{machine}: {contents}");
                    let uuid = mv_machines::stable_uuid("luks-secret", machine);
                    assert!(
                        contents.contains(&format!(r#"<secret type="passphrase" uuid="{uuid}"/>"#))
                    );
                } else {
                    assert_eq!(keyed, 0, "{machine}");
                }
            }
            if kind == "secret" {
                assert!(contents.contains(r#"<secret ephemeral="yes" private="yes">"#));
                secrets += 1;
            }
            if path.ends_with("game.app.multiverse/domain.xml") {
                assert!(contents.contains(r#"<model type="none"/>"#));
                assert!(!contents.contains("<graphics"));
            }
            checked += 1;
        }
        assert_eq!(secrets, 3, "{host_arch}");
        assert_eq!(checked, 9 + 4 + 1 + secrets, "{host_arch}");
    }
}
