//! `multiverse image|console`: base images (import, list, build) and a machine's serial console.

use crate::common::{select, topology, uri};
use multiverse::cli::virt::{ConsoleArgs, ImageCommand};
use multiverse::error::{CliError, Hinted};
use multiverse::global::Global;
use mv_libvirt::{ConsoleError, ImageError, ImageOutcome};
use mv_machines::Tree;
use std::path::PathBuf;

/// `multiverse image`.
pub fn image(g: &Global, c: ImageCommand) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    match c {
        ImageCommand::Build(a) => multiverse::cmd::image_build::build(g, a),
        ImageCommand::Import { file, name } => {
            let res = mv_libvirt::import_image(&file, &tree.images_dir(), &name, g.dry_run);
            let (outcome, path) = match res {
                Err(e @ ImageError::Exists { .. }) => {
                    return Err(CliError::from(e))
                        .hint("pick another --name, or remove the old image first")
                }
                other => other.map_err(CliError::from)?,
            };
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"name": name, "path": path, "outcome": outcome})
                );
                return Ok(());
            }
            match (outcome, g.dry_run) {
                (ImageOutcome::Unchanged, _) => g.say(format!(
                    "unchanged: {} already holds this image",
                    path.display()
                )),
                (_, true) => g.say(format!(
                    "would import {} as {}",
                    file.display(),
                    path.display()
                )),
                (_, false) => g.say(format!("imported {} as {}", file.display(), path.display())),
            }
            Ok(())
        }
        ImageCommand::List => {
            let dir = tree.images_dir();
            let mut rows = Vec::new();
            if let Ok(rd) = std::fs::read_dir(&dir) {
                let mut paths: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("qcow2"))
                    .collect();
                paths.sort();
                for p in paths {
                    let info = mv_libvirt::image_info(&p).map_err(CliError::from)?;
                    let name = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    rows.push(serde_json::json!({
                        "name": name,
                        "path": p,
                        "format": info.format,
                        "virtual_size": info.virtual_size,
                    }));
                }
            }
            if g.json {
                multiverse::global::print_json(&rows)?;
            } else if rows.is_empty() {
                g.say(format!(
                    "no base images in {} (add one with `multiverse image import FILE --name NAME`)",
                    dir.display()
                ));
            } else {
                for r in &rows {
                    println!(
                        "{:<24} {:>10} MiB  {}",
                        r["name"].as_str().unwrap_or(""),
                        r["virtual_size"].as_u64().unwrap_or(0) >> 20,
                        r["path"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
    }
}

/// `multiverse console FQDN`: libvirt's own console client on the machine's serial port (the
/// same stream libvirt keeps in `machines/<fqdn>/console.log`).
pub fn console(g: &Global, a: ConsoleArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let topo = topology(&tree)?;
    let machines = select(&topo, std::slice::from_ref(&a.machine))?;
    let name = machines
        .first()
        .map(|m| m.name.as_str().to_string())
        .unwrap_or_default();
    let uri = uri(&a.conn, Some(&topo));
    if g.dry_run {
        g.say(format!("would run: virsh -c {uri} console {name}"));
        return Ok(());
    }
    mv_libvirt::console(&uri, &name).map_err(|e| {
        let hint = match &e {
            ConsoleError::Spawn(_) => "install libvirt-clients",
            ConsoleError::Exit { .. } => "is the machine running? `multiverse status` shows it",
        };
        CliError::from(e).with_hint(hint)
    })
}
