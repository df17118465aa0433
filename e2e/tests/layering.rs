//! The workspace's crates are layered: no import cycle between the modules of the operator, the gateway,
//! the process crate or the CRD crate (see `bulkhead_e2e::layering` for what counts as an import). A failure
//! prints the crate's whole graph, layer by layer, and each cycle with the lines that make it.

#![allow(clippy::expect_used)] // the helpers fail the test by panicking

use std::path::{Path, PathBuf};

use bulkhead_e2e::layering::ModuleGraph;

fn crate_graph(name: &str) -> ModuleGraph {
    let src: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate is in the workspace")
        .join(name)
        .join("src");
    ModuleGraph::load(&src).unwrap_or_else(|error| panic!("{error}"))
}

/// Fails with the full report when the crate has a cycle.
fn assert_acyclic(graph: &ModuleGraph) {
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "{} import cycle(s) in {}; what both sides of a cycle share belongs in a leaf module.\n\n{}",
        cycles.len(),
        graph.root().display(),
        graph.render()
    );
    assert!(graph.layers().is_ok());
}

/// Guards against a reader that sees nothing, which would find no cycle either.
fn assert_read_whole(graph: &ModuleGraph, modules: usize, imports: usize) {
    assert!(
        graph.modules().len() >= modules && graph.import_count() >= imports,
        "expected at least {modules} modules and {imports} imports in {}, read {} and {}:\n{}",
        graph.root().display(),
        graph.modules().len(),
        graph.import_count(),
        graph.render()
    );
}

#[test]
fn operator_modules_have_no_import_cycle() {
    assert_acyclic(&crate_graph("operator"));
}

#[test]
fn operator_module_graph_is_read_whole() {
    let graph = crate_graph("operator");
    assert_read_whole(&graph, 15, 20);
    for module in [
        "pipeline::reconcile",
        "postgres::provision",
        "verify::postgres::classify",
    ] {
        assert!(
            graph.modules().iter().any(|name| name == module),
            "no {module}:\n{}",
            graph.render()
        );
    }
}

#[test]
fn gateway_modules_have_no_import_cycle() {
    assert_acyclic(&crate_graph("gateway"));
}

#[test]
fn gateway_module_graph_is_read_whole() {
    let graph = crate_graph("gateway");
    assert_read_whole(&graph, 15, 20);
    for module in ["gates::alg", "keys::jwk", "routes::watch", "proxy"] {
        assert!(
            graph.modules().iter().any(|name| name == module),
            "no {module}:\n{}",
            graph.render()
        );
    }
}

#[test]
fn process_modules_have_no_import_cycle() {
    let graph = crate_graph("process");
    assert_read_whole(&graph, 3, 1);
    assert_acyclic(&graph);
}

#[test]
fn crds_modules_have_no_import_cycle() {
    let graph = crate_graph("crds");
    assert_read_whole(&graph, 8, 8);
    assert_acyclic(&graph);
}

/// The operator's top-level modules, top layer first, as `operator/src/lib.rs` describes them. A module imports
/// only from its own top-level module or from one further down this list; the crate root may import any.
const OPERATOR_LAYERS: &[&[&str]] = &[
    &["process"],
    &["verify"],
    &["pipeline"],
    &["settings"],
    &["cluster", "postgres", "metrics"],
];

#[test]
fn operator_folders_import_only_downward() {
    let graph = crate_graph("operator");
    let rank = |module: &str| {
        let top = module.split("::").next().unwrap_or(module);
        OPERATOR_LAYERS
            .iter()
            .position(|layer| layer.contains(&top))
            .map(|rank| (top.to_owned(), rank))
    };
    let mut upward = Vec::new();
    for import in graph.imports() {
        if import.from == "crate" {
            continue;
        }
        let from =
            rank(&import.from).unwrap_or_else(|| panic!("{} is in no layer of OPERATOR_LAYERS", import.from));
        let to =
            rank(&import.to).unwrap_or_else(|| panic!("{} is in no layer of OPERATOR_LAYERS", import.to));
        if from.0 != to.0 && from.1 >= to.1 {
            upward.push(import.to_string());
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not go down the operator's layers ({OPERATOR_LAYERS:?}):\n{}",
        upward.join("\n")
    );
}
