//! `multiverse machine new|list|show|rm`: the machines of multiverse.toml.
//!
//! `new` and `rm` edit multiverse.toml in place (mv-machines' editing keeps comments), validate the
//! result as a whole and only then write it; neither renders (run `multiverse render`). `rm` never
//! deletes machines/<fqdn>/, which may hold the machine's disk.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::{IdentityName, MachineName};
use mv_machines::{
    add_machine, remove_machine, Arch, Machine, MachineType, NewMachine, NewNetwork, Os,
    RouterRole, Topology, Tree,
};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a machine to multiverse.toml
    New(Box<NewArgs>),
    /// List every machine (the host first)
    List,
    /// Show one machine, resolved, with its public identity when one is recorded
    Show {
        /// The machine's FQDN
        fqdn: String,
    },
    /// Remove a machine from multiverse.toml (its folder and disk are left in place)
    Rm {
        /// The machine's FQDN
        fqdn: String,
    },
}

/// Arguments of `machine new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The machine's FQDN: lower case, at least one dot (`vault.service.multiverse`)
    pub fqdn: String,
    /// Machine type
    #[arg(long = "type", value_parser = ["controller", "router", "service", "application"])]
    pub kind: String,
    /// Architecture (default: the host's)
    #[arg(long, value_parser = ["x86_64", "aarch64"])]
    pub arch: Option<String>,
    /// OS to provision (default: alpine for routers and services, debian otherwise)
    #[arg(long, value_parser = ["alpine", "debian"])]
    pub os: Option<String>,
    /// Memory in MiB (default by type)
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Virtual CPUs (default by type)
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Network to attach (repeatable; default: the network the star router serves)
    #[arg(long = "network", value_name = "NAME")]
    pub networks: Vec<String>,
    /// Router role (routers only)
    #[arg(long, value_parser = ["universe", "galaxy", "star"])]
    pub role: Option<String>,
    /// Router upstream network (routers only)
    #[arg(long, value_name = "NAME")]
    pub upstream: Option<String>,
    /// Start order at boot (lower first); without it the machine is started by hand
    #[arg(long, value_name = "N")]
    pub autostart: Option<u32>,
    /// A new network this router serves (routers only; needs --subnet)
    #[arg(long, value_name = "NAME", requires = "subnet")]
    pub serves: Option<String>,
    /// Subnet of the --serves network (`10.4.4.0/24`)
    #[arg(long, value_name = "CIDR", requires = "serves")]
    pub subnet: Option<String>,
    /// Bridge of the --serves network (default `mv<NAME>`)
    #[arg(long, value_name = "NAME", requires = "serves")]
    pub bridge: Option<String>,
}

/// Runs the command.
pub fn run(g: &Global, c: Command) -> Result<(), CliError> {
    match c {
        Command::New(a) => new(g, *a),
        Command::List => list(g),
        Command::Show { fqdn } => show(g, &fqdn),
        Command::Rm { fqdn } => rm(g, &fqdn),
    }
}

fn parse_name(fqdn: &str) -> Result<MachineName, CliError> {
    MachineName::parse(fqdn).usage()
}

fn read_config(tree: &Tree) -> Result<(String, Topology), CliError> {
    let path = tree.config_file();
    let text = Topology::read_text(&path).map_err(super::render::config_error)?;
    let t = Topology::parse(&text, &path).map_err(super::render::config_error)?;
    Ok((text, t))
}

fn new(g: &Global, a: NewArgs) -> Result<(), CliError> {
    let name = parse_name(&a.fqdn)?;
    let kind: MachineType = a.kind.parse().map_err(CliError::usage_msg)?;
    let spec = NewMachine {
        name: name.clone(),
        kind,
        arch: a
            .arch
            .as_deref()
            .map(str::parse::<Arch>)
            .transpose()
            .map_err(CliError::usage_msg)?,
        os: a
            .os
            .as_deref()
            .map(str::parse::<Os>)
            .transpose()
            .map_err(CliError::usage_msg)?,
        memory_mib: a.memory,
        vcpus: a.vcpus,
        networks: a.networks,
        role: a.role.as_deref().map(|r| match r {
            "universe" => RouterRole::Universe,
            "galaxy" => RouterRole::Galaxy,
            _ => RouterRole::Star,
        }),
        upstream: a.upstream,
        autostart: a.autostart,
        serves: match (a.serves, a.subnet) {
            (Some(name), Some(subnet)) => Some(NewNetwork {
                name,
                subnet: subnet.parse().map_err(CliError::usage_msg)?,
                bridge: a.bridge,
            }),
            _ => None,
        },
    };
    let tree = Tree::new(&g.root);
    let path = tree.config_file();
    let file = path.display().to_string();
    let (text, current) = read_config(&tree)?;
    // An existing machine: the same definition again is "nothing changed"; a different one is refused.
    let (base_text, base_topology) = match current.machine(&name) {
        Some(existing) if !existing.is_vm() => {
            return Err(CliError::usage_msg(format!(
                "`{name}` is the host; it is described in [host]"
            )))
        }
        Some(_) => {
            let without = remove_machine(&text, &file, &name)
                .usage()?
                .unwrap_or_else(|| text.clone());
            let t = Topology::parse(&without, &path).map_err(super::render::config_error);
            match t {
                Ok(t) => (without, t),
                // The existing machine serves a network: compare against the file as it is.
                Err(_) => (text.clone(), current.clone()),
            }
        }
        None => (text.clone(), current.clone()),
    };
    let new_text = add_machine(&base_text, &file, &base_topology, &spec).usage()?;
    let new_topology = Topology::parse(&new_text, &path).map_err(super::render::config_error);
    if let Some(existing) = current.machine(&name) {
        let same = new_topology
            .as_ref()
            .ok()
            .and_then(|t| t.machine(&name))
            .is_some_and(|m| m == existing);
        if same {
            g.say(format!(
                "machine {name} already exists as asked; nothing changed"
            ));
            return Ok(());
        }
        return Err(CliError::usage_msg(format!(
            "{file}: machine `{name}` already exists with other settings"
        ))
        .with_hint("edit multiverse.toml, or `multiverse machine rm` it first"));
    }
    let new_topology = new_topology?;
    if g.dry_run {
        let added = new_text.get(text.len()..).unwrap_or(&new_text);
        g.say(format!("would add to {file}:{added}"));
        return Ok(());
    }
    mv_core::fsutil::write_public(&path, new_text.as_bytes())
        .hint("check that --root is writable")?;
    let m = new_topology.machine(&name);
    g.say(format!(
        "added {name} ({}) to {file}; run `multiverse render` to write its definition",
        m.map(|m| format!("{}, {}, {} MiB", m.kind, m.arch, m.memory_mib))
            .unwrap_or_default()
    ));
    Ok(())
}

fn rm(g: &Global, fqdn: &str) -> Result<(), CliError> {
    let name = parse_name(fqdn)?;
    let tree = Tree::new(&g.root);
    let path = tree.config_file();
    let file = path.display().to_string();
    let (text, current) = read_config(&tree)?;
    if current.machine(&name).is_some_and(|m| !m.is_vm()) {
        return Err(CliError::usage_msg(format!(
            "`{name}` is the host and cannot be removed"
        )));
    }
    let Some(new_text) = remove_machine(&text, &file, &name).usage()? else {
        g.say(format!("no machine {name} in {file}; nothing changed"));
        return Ok(());
    };
    // Refuse removals that leave the file invalid (a router still serving a network...).
    Topology::parse(&new_text, &path)
        .map_err(super::render::config_error)
        .hint(&format!("`{name}` is still referred to; change that first"))?;
    if g.dry_run {
        g.say(format!("would remove {name} from {file}"));
        return Ok(());
    }
    mv_core::fsutil::write_public(&path, new_text.as_bytes())
        .hint("check that --root is writable")?;
    g.say(format!("removed {name} from {file}"));
    let dir = tree.machine_dir(&name);
    if dir.exists() {
        g.say(format!(
            "{} is left in place (it may hold the disk); remove it by hand when you are sure",
            dir.display()
        ));
    }
    Ok(())
}

fn row(m: &Machine) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "type": m.kind,
        "arch": m.arch,
        "os": m.os,
        "memory_mib": m.memory_mib,
        "vcpus": m.vcpus,
        "autostart": m.autostart,
        "role": m.router.as_ref().map(|r| r.role),
        "networks": m.networks.iter().map(|a| a.network.clone()).collect::<Vec<_>>(),
    })
}

fn list(g: &Global) -> Result<(), CliError> {
    let (_, t) = super::render::load(g)?;
    if g.json {
        let rows: Vec<_> = t.machines.iter().map(row).collect();
        crate::global::print_json(&rows)?;
        return Ok(());
    }
    println!(
        "{:<32} {:<16} {:<8} {:<7} {:>7} {:>5} {:>9}  NETWORKS",
        "NAME", "TYPE", "ARCH", "OS", "MEM_MIB", "VCPU", "AUTOSTART"
    );
    for m in &t.machines {
        let kind = match m.router.as_ref().map(|r| r.role) {
            Some(role) => format!("router/{}", format!("{role:?}").to_lowercase()),
            None => m.kind.to_string(),
        };
        println!(
            "{:<32} {:<16} {:<8} {:<7} {:>7} {:>5} {:>9}  {}",
            m.name.as_str(),
            kind,
            m.arch.as_str(),
            m.os.as_str(),
            m.memory_mib,
            if m.is_vm() {
                m.vcpus.to_string()
            } else {
                "-".into()
            },
            m.autostart
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            m.networks
                .iter()
                .map(|a| a.network.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(())
}

fn show(g: &Global, fqdn: &str) -> Result<(), CliError> {
    let name = parse_name(fqdn)?;
    let (tree, t) = super::render::load(g)?;
    let Some(m) = t.machine(&name) else {
        return Err(CliError::usage_msg(format!(
            "no machine `{name}` in {}",
            tree.config_file().display()
        ))
        .with_hint("`multiverse machine list` shows the machines"));
    };
    // The public identity is read from identity/public.json: no passphrase needed. A name never
    // derived there has none yet.
    let identity = mv_identity::public_identity(tree.root(), &IdentityName::Machine(name.clone()))
        .hint("the public identity record is unreadable; `multiverse identity show` rewrites it")?;
    let paths = serde_json::json!({
        "dir": tree.machine_dir(&name),
        "machine_toml": tree.machine_toml(&name),
        "domain_xml": if m.is_vm() { Some(tree.domain_xml(&name)) } else { None },
        "disk": if m.is_vm() { Some(tree.disk(&name)) } else { None },
    });
    if g.json {
        let v = serde_json::json!({
            "machine": m,
            "paths": paths,
            "identity": identity,
        });
        crate::global::print_json(&v)?;
        return Ok(());
    }
    println!("name:       {}", m.name);
    println!("type:       {}", m.kind);
    if let Some(r) = &m.router {
        println!("role:       {}", format!("{:?}", r.role).to_lowercase());
        if let Some(v) = r.vpn {
            println!("vpn:        {}", format!("{v:?}").to_lowercase());
        }
        if let Some(u) = &r.upstream {
            println!("upstream:   {u}");
        }
        if !r.serves.is_empty() {
            println!("serves:     {}", r.serves.join(", "));
        }
    }
    println!("arch:       {}", m.arch);
    println!("os:         {}", m.os.as_str());
    println!("memory:     {} MiB", m.memory_mib);
    if m.is_vm() {
        println!("vcpus:      {}", m.vcpus);
        println!(
            "autostart:  {}",
            m.autostart
                .map(|a| a.to_string())
                .unwrap_or_else(|| "no".into())
        );
    }
    for a in &m.networks {
        println!(
            "network:    {} mac {}{}",
            a.network,
            a.mac,
            a.address
                .map(|x| format!(" address {x}"))
                .unwrap_or_default()
        );
    }
    for (i, d) in m.disks.iter().enumerate() {
        println!(
            "disk:       {} ({} GiB, base {})",
            tree.disk_n(&name, i).display(),
            d.size_gib,
            d.base.as_deref().unwrap_or("none")
        );
    }
    for p in &m.pci {
        println!("pci:        {p}");
    }
    for u in &m.usb {
        println!("usb:        {u}");
    }
    if m.gpu {
        println!("gpu:        yes");
    }
    let ports = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    if !m.onion.is_empty() {
        println!("published:  onion ports {}", ports(&m.onion));
    }
    for s in t.onion_services(&name) {
        println!(
            "publishes:  {} (onion ports {} to {})",
            s.machine,
            ports(&s.ports),
            s.address
        );
    }
    if m.is_vm() {
        println!("domain:     {}", tree.domain_xml(&name).display());
    }
    match identity {
        Some(id) => {
            println!("ssh:        {}", id.ssh_ed25519);
            println!("host key:   {}", id.ssh_host_ed25519);
            println!("onion:      {}", id.onion);
            println!("openpgp:    {}", id.openpgp_fingerprint);
        }
        None => {
            println!("identity:   none recorded (`multiverse identity show {name}` records it)")
        }
    }
    Ok(())
}
