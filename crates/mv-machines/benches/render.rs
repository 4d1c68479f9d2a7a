//! Rendering a 1,000-machine topology: in memory (templates only) and into a tree on disk
//! (first render, then the no-op second render that compares every file).
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use mv_machines::{render_plan, render_tree, Topology, Tree};
use std::fmt::Write;
use std::path::Path;

/// The default topology plus `n` service/application VMs spread over the star router's network.
pub fn big_topology(n: usize) -> Topology {
    let mut text = mv_machines::DEFAULT_TOML.replace("10.2.2.0/24", "10.2.0.0/16");
    text = text
        .replace("gateway = \"10.2.2.1\"", "gateway = \"10.2.0.1\"")
        .replace("address = \"10.2.2.1\"", "address = \"10.2.0.1\"")
        .replace("10.2.2.10", "10.2.0.10")
        .replace("10.2.2.20", "10.2.0.20");
    for i in 0..n {
        let kind = if i % 2 == 0 { "service" } else { "application" };
        write!(
            text,
            "\n[[machines]]\nname = \"vm{i}.{kind}.multiverse\"\ntype = \"{kind}\"\nautostart = {}\nnetworks = [{{ network = \"net2\", address = \"10.2.{}.{}\" }}]\n",
            10 + i,
            4 + i / 200,
            10 + i % 200
        )
        .unwrap();
    }
    Topology::parse(&text, Path::new("bench.toml")).unwrap()
}

fn bench(c: &mut Criterion) {
    let t = big_topology(1000);
    assert_eq!(t.vms().count(), 1006);
    let mut g = c.benchmark_group("render_1000");
    g.sample_size(10);
    g.bench_function("plan_in_memory", |b| {
        let tree = Tree::new("/var/multiverse");
        b.iter(|| render_plan(&tree, &t).unwrap().len())
    });
    g.bench_function("first_render_to_disk", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().unwrap(),
            |d| {
                render_tree(&Tree::new(d.path()), &t, false).unwrap();
                d
            },
        )
    });
    let d = tempfile::tempdir().unwrap();
    let tree = Tree::new(d.path());
    render_tree(&tree, &t, false).unwrap();
    g.bench_function("second_render_nothing_changed", |b| {
        b.iter(|| assert!(render_tree(&tree, &t, false).unwrap().nothing_changed()))
    });
    g.finish();
    c.bench_function("parse_1000_machine_toml", |b| {
        let text = t.to_toml().unwrap();
        b.iter(|| Topology::parse(&text, Path::new("x")).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
