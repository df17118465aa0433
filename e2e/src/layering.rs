//! The module graph of a crate, read from its source with a Rust parser, to keep the crate's modules layered:
//! an import cycle between two modules is reported with the lines that make it, and an acyclic crate is shown
//! as layers, bottom first.
//!
//! # What a module is
//!
//! A node is a file module: the crate root (`lib.rs`, else `main.rs`, named `crate`) and every module loaded
//! from a file by `mod x;` — `x.rs` or `x/mod.rs` in the declaring module's directory, which for the root and
//! for a `mod.rs` is its own directory and for any other file `a/b.rs` is `a/b/`. A `#[path = "..."]` on a
//! module declared at the top level of a file is honoured (relative to that file's directory, the loaded file
//! then owning its directory like a `mod.rs`); on one declared inside an inline module it is an error. Nodes
//! are named by their path from the root, e.g. `verify::postgres::classify`.
//!
//! An inline `mod x { ... }` belongs to the node of its file, but it is a module of its own for resolving
//! paths: `super::` inside it names the module around it, and `x::Item` outside it names the file's node.
//!
//! Anything under `#[cfg(test)]` (or `#[cfg(all(test, ...))]`) is left out: test modules, inline or in a file
//! (also a file whose first line is `#![cfg(test)]`), and test-only items, `use`s, statements, fields,
//! variants and match arms. Tests may use fixtures from anywhere.
//!
//! # What an import is
//!
//! There is an edge A → B when the non-test code of A names an item of B. Every path is resolved to the
//! longest prefix that is a known module (file or inline), and the edge goes from A's node to that module's
//! node; an edge from a node to itself is dropped. The paths are:
//! - every leaf of every `use` tree: braces, renames, globs (`use super::*` names the parent) and `pub use`
//!   re-exports alike;
//! - every path of two or more segments anywhere else in an item (types, expressions, patterns, trait bounds,
//!   macro paths), and every path in the tokens of a macro invocation or definition (`format!`,
//!   `tracing::info!`, `macro_rules!` bodies), including a `path::{...}` use tree written inside one.
//!
//! A path counts when it starts with `crate::`, `super::` (repeated as often as it is), `self::`, the name of
//! a child module of the module it is written in (Rust 2018 paths: `verify::run()` in the root), or a name
//! that module imported as a module (`use crate::build; build::desired()`). Anything else — a path into
//! another crate, a path with a leading `::`, `$crate` and other macro variables — is not an import. Neither
//! are visibility restrictions (`pub(crate)`, `pub(in crate::x)`), attributes, nor a `mod x;` declaration:
//! a parent owning a child does not use it. A parent that calls or re-exports its child does, and a child
//! naming `super::Thing` of its parent does too, so such a pair is a cycle: what both share belongs in a leaf
//! module of its own.
//!
//! Each edge keeps its evidence: the first line of the importing file where it occurs.
//!
//! # What is reported
//!
//! [`ModuleGraph::cycles`] gives each strongly connected component of more than one module as one concrete
//! cycle through it, with the evidence of each step. [`ModuleGraph::layers`] gives an acyclic graph in
//! layers: layer 0 holds the modules that import no other module of the crate, layer n those whose highest
//! import is in layer n - 1.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Attribute, Expr, ImplItem, Item, ItemMod, ItemUse, Lit, Meta, Stmt, TraitItem, UseTree};

/// Why a crate's module graph could not be read, or why it has no layers.
#[derive(Debug, thiserror::Error)]
pub enum LayeringError {
    /// The directory has neither `lib.rs` nor `main.rs`.
    #[error("{}: no crate root (lib.rs or main.rs)", dir.display())]
    NoCrateRoot {
        /// The directory given.
        dir: PathBuf,
    },
    /// A source file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// A source file is not valid Rust.
    #[error("{}:{line}:{column}: cannot parse: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped, 1-based.
        line: usize,
        /// Where the parser stopped, 1-based.
        column: usize,
        /// The parser's complaint.
        source: syn::Error,
    },
    /// `mod x;` names a module whose file does not exist.
    #[error("{declared_at}: module `{module}` has no file: neither {} nor {} exists", candidates.0.display(), candidates.1.display())]
    MissingModule {
        /// The module's path from the crate root.
        module: String,
        /// The `mod` declaration.
        declared_at: Location,
        /// The files looked for.
        candidates: (PathBuf, PathBuf),
    },
    /// `mod x;` names a module that has both of its possible files.
    #[error("{declared_at}: module `{module}` has two files, {} and {}", candidates.0.display(), candidates.1.display())]
    AmbiguousModule {
        /// The module's path from the crate root.
        module: String,
        /// The `mod` declaration.
        declared_at: Location,
        /// The two files.
        candidates: (PathBuf, PathBuf),
    },
    /// A `#[path]` attribute this reader does not follow.
    #[error("{declared_at}: module `{module}`: {reason}")]
    UnsupportedPath {
        /// The module's path from the crate root.
        module: String,
        /// The `mod` declaration.
        declared_at: Location,
        /// What is not supported.
        reason: &'static str,
    },
    /// Layers were asked of a graph with import cycles.
    #[error("{count} import cycle(s), so the modules have no layers:\n{report}")]
    Cyclic {
        /// How many strongly connected components of more than one module there are.
        count: usize,
        /// Each cycle with its evidence.
        report: String,
    },
}

/// A line of a source file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The file, as reached from the directory or root file the graph was loaded from.
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One edge of the graph: `from` names an item of `to`, first at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The importing module.
    pub from: String,
    /// The imported module.
    pub to: String,
    /// The first line of `from`'s file that names `to`.
    pub at: Location,
}

impl fmt::Display for Import {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} at {}", self.from, self.to, self.at)
    }
}

/// A strongly connected component of more than one module, and one cycle through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Every module of the component, sorted.
    pub modules: Vec<String>,
    /// A shortest cycle from the component's first module back to it: each step with its evidence.
    pub path: Vec<Import>,
}

impl Cycle {
    /// The cycle as module names, the first repeated at the end: `a`, `b`, `a`.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.path.iter().map(|step| step.from.as_str()).collect();
        if let Some(first) = self.path.first() {
            names.push(first.from.as_str());
        }
        names
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.names().join(" -> "))?;
        if self.modules.len() > self.path.len() {
            writeln!(
                f,
                "  (one cycle of a tangle of {} modules: {})",
                self.modules.len(),
                self.modules.join(", ")
            )?;
        }
        for step in &self.path {
            writeln!(f, "  {step}")?;
        }
        Ok(())
    }
}

/// The file modules of one crate and the imports between them.
#[derive(Debug)]
pub struct ModuleGraph {
    root: PathBuf,
    /// Module names, sorted by path (the root first); a module's index is its node.
    names: Vec<String>,
    /// Per node, each module it imports and the first line that does.
    imports: Vec<BTreeMap<usize, Location>>,
}

impl ModuleGraph {
    /// Reads the crate whose root, `lib.rs` or else `main.rs`, is in `src_dir`.
    pub fn load(src_dir: &Path) -> Result<Self, LayeringError> {
        ["lib.rs", "main.rs"]
            .iter()
            .map(|name| src_dir.join(name))
            .find(|root| root.is_file())
            .ok_or_else(|| LayeringError::NoCrateRoot {
                dir: src_dir.to_path_buf(),
            })
            .and_then(|root| Self::load_root(&root))
    }

    /// Reads the crate whose root file is `root`.
    pub fn load_root(root: &Path) -> Result<Self, LayeringError> {
        let mut loader = Loader::default();
        let dir = root.parent().map(Path::to_path_buf).unwrap_or_default();
        loader.load(Vec::new(), root.to_path_buf(), dir)?;
        let Loader { files, known } = loader;

        let resolver = Resolver::new(&known, &files);
        let mut imports: Vec<BTreeMap<usize, Location>> = vec![BTreeMap::new(); files.len()];
        for (node, parsed) in files.iter().enumerate() {
            let mut visitor = EdgeVisitor {
                resolver: &resolver,
                scope: parsed.module.clone(),
                node,
                file: &parsed.file,
                imports: &mut imports[node],
            };
            for item in &parsed.ast.items {
                visitor.visit_item(item);
            }
        }

        // Number the nodes in name order, so that everything derived from the graph is deterministic.
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by(|&a, &b| files[a].module.cmp(&files[b].module));
        let mut renumber = vec![0; files.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old] = new;
        }
        let names = order.iter().map(|&old| module_name(&files[old].module)).collect();
        let imports = order
            .iter()
            .map(|&old| {
                std::mem::take(&mut imports[old])
                    .into_iter()
                    .map(|(to, at)| (renumber[to], at))
                    .collect()
            })
            .collect();
        Ok(Self {
            root: root.to_path_buf(),
            names,
            imports,
        })
    }

    /// The crate's root file.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every module, the root (`crate`) first, then by path.
    pub fn modules(&self) -> &[String] {
        &self.names
    }

    /// The modules `module` imports, sorted; `None` for a module the crate does not have.
    pub fn imports_of(&self, module: &str) -> Option<Vec<&str>> {
        let node = self.names.iter().position(|name| name == module)?;
        Some(
            self.imports[node]
                .keys()
                .map(|&to| self.names[to].as_str())
                .collect(),
        )
    }

    /// Every edge, sorted by importer then imported module.
    pub fn imports(&self) -> Vec<Import> {
        self.imports
            .iter()
            .enumerate()
            .flat_map(|(from, targets)| targets.iter().map(move |(&to, at)| self.import(from, to, at)))
            .collect()
    }

    /// How many edges there are.
    pub fn import_count(&self) -> usize {
        self.imports.iter().map(BTreeMap::len).sum()
    }

    /// One cycle through each strongly connected component of more than one module, sorted by their paths.
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = self
            .components()
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| self.cycle_through(&component))
            .collect();
        cycles.sort_by(|a, b| a.names().cmp(&b.names()));
        cycles
    }

    /// The modules in layers, bottom first, each layer sorted; an error with the cycles if there are any.
    pub fn layers(&self) -> Result<Vec<Vec<String>>, LayeringError> {
        let cycles = self.cycles();
        if !cycles.is_empty() {
            return Err(LayeringError::Cyclic {
                count: cycles.len(),
                report: render_cycles(&cycles),
            });
        }
        Ok(self
            .component_layers()
            .into_iter()
            .map(|layer| {
                layer
                    .into_iter()
                    .flatten()
                    .map(|node| self.names[node].clone())
                    .collect()
            })
            .collect())
    }

    /// The graph as text: each layer of strongly connected components, bottom first, with each module's
    /// imports (a component of more than one module is shown as a cycle in the layer its highest import puts
    /// it), then every cycle with its evidence.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: {} modules, {} imports\n",
            self.root.display(),
            self.names.len(),
            self.import_count()
        );
        for (number, layer) in self.component_layers().iter().enumerate() {
            out.push_str(&format!("layer {number}\n"));
            for component in layer {
                let indent = if component.len() > 1 {
                    out.push_str(&format!("  cycle of {} modules:\n", component.len()));
                    "    "
                } else {
                    "  "
                };
                for &node in component {
                    out.push_str(&format!("{indent}{}{}\n", self.names[node], self.arrow(node)));
                }
            }
        }
        let cycles = self.cycles();
        if cycles.is_empty() {
            out.push_str("no import cycles\n");
        } else {
            out.push_str(&format!("{} import cycle(s):\n", cycles.len()));
            out.push_str(&render_cycles(&cycles));
        }
        out
    }

    fn arrow(&self, node: usize) -> String {
        if self.imports[node].is_empty() {
            return String::new();
        }
        let targets: Vec<&str> = self.imports[node]
            .keys()
            .map(|&to| self.names[to].as_str())
            .collect();
        format!(" -> {}", targets.join(", "))
    }

    fn import(&self, from: usize, to: usize, at: &Location) -> Import {
        Import {
            from: self.names[from].clone(),
            to: self.names[to].clone(),
            at: at.clone(),
        }
    }

    /// The strongly connected components (Tarjan), each sorted, every component after all it imports.
    fn components(&self) -> Vec<Vec<usize>> {
        let mut tarjan = Tarjan {
            graph: &self.imports,
            index: vec![None; self.names.len()],
            low: vec![0; self.names.len()],
            on_stack: vec![false; self.names.len()],
            stack: Vec::new(),
            next: 0,
            components: Vec::new(),
        };
        for node in 0..self.names.len() {
            if tarjan.index[node].is_none() {
                tarjan.connect(node);
            }
        }
        tarjan.components
    }

    /// The components in layers: a component's layer is 0 if it imports nothing outside itself, else one
    /// more than the highest layer of what it imports. Layers and the components in them are sorted.
    fn component_layers(&self) -> Vec<Vec<Vec<usize>>> {
        let components = self.components();
        let mut component_of = vec![0; self.names.len()];
        for (number, component) in components.iter().enumerate() {
            for &node in component {
                component_of[node] = number;
            }
        }
        // Tarjan emits a component after every component it reaches, so one pass in order suffices.
        let mut layer_of = vec![0; components.len()];
        for (number, component) in components.iter().enumerate() {
            layer_of[number] = component
                .iter()
                .flat_map(|&node| self.imports[node].keys())
                .map(|&to| component_of[to])
                .filter(|&other| other != number)
                .map(|other| layer_of[other] + 1)
                .max()
                .unwrap_or(0);
        }
        let height = layer_of.iter().max().map_or(0, |top| top + 1);
        let mut layers = vec![Vec::new(); height];
        for (number, component) in components.into_iter().enumerate() {
            layers[layer_of[number]].push(component);
        }
        for layer in &mut layers {
            layer.sort();
        }
        layers
    }

    /// A shortest cycle from the component's first module back to it (breadth first, in name order).
    fn cycle_through(&self, component: &[usize]) -> Cycle {
        let modules = component.iter().map(|&node| self.names[node].clone()).collect();
        let Some(&start) = component.first() else {
            return Cycle {
                modules,
                path: Vec::new(),
            };
        };
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(node) = queue.pop_front() {
            for &next in self.imports[node].keys() {
                if next == start {
                    last = Some(node);
                    break 'search;
                }
                if component.contains(&next) && !parent.contains_key(&next) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        let mut nodes = Vec::new();
        let mut cursor = last;
        while let Some(node) = cursor {
            nodes.push(node);
            cursor = if node == start {
                None
            } else {
                parent.get(&node).copied()
            };
        }
        nodes.reverse();
        let path = nodes
            .iter()
            .enumerate()
            .filter_map(|(step, &from)| {
                let to = nodes.get(step + 1).copied().unwrap_or(start);
                self.imports[from].get(&to).map(|at| self.import(from, to, at))
            })
            .collect();
        Cycle { modules, path }
    }
}

fn render_cycles(cycles: &[Cycle]) -> String {
    cycles
        .iter()
        .enumerate()
        .map(|(number, cycle)| format!("cycle {}: {cycle}", number + 1))
        .collect()
}

fn module_name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_owned()
    } else {
        path.join("::")
    }
}

struct Tarjan<'g> {
    graph: &'g [BTreeMap<usize, Location>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn connect(&mut self, node: usize) {
        let index = self.next;
        self.index[node] = Some(index);
        self.low[node] = index;
        self.next += 1;
        self.stack.push(node);
        self.on_stack[node] = true;
        for &next in self.graph[node].keys() {
            match self.index[next] {
                None => {
                    self.connect(next);
                    self.low[node] = self.low[node].min(self.low[next]);
                }
                Some(seen) if self.on_stack[next] => self.low[node] = self.low[node].min(seen),
                Some(_) => {}
            }
        }
        if self.low[node] == index {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            component.sort_unstable();
            self.components.push(component);
        }
    }
}

/// One file module, parsed, its test code removed.
struct Parsed {
    module: Vec<String>,
    file: PathBuf,
    ast: syn::File,
}

/// A `mod x;` still to be read.
struct Declared {
    module: Vec<String>,
    file: PathBuf,
    child_dir: PathBuf,
}

/// The file module whose items are being read.
struct Owner<'a> {
    node: usize,
    file: &'a Path,
}

#[derive(Default)]
struct Loader {
    files: Vec<Parsed>,
    /// Every module, file or inline, and the node (index into `files`) of the file that holds it.
    known: BTreeMap<Vec<String>, usize>,
}

impl Loader {
    /// Reads the file module `module` from `file`, its children's files being in `child_dir`, and every file
    /// module under it.
    fn load(&mut self, module: Vec<String>, file: PathBuf, child_dir: PathBuf) -> Result<(), LayeringError> {
        let source = std::fs::read_to_string(&file).map_err(|source| LayeringError::Read {
            path: file.clone(),
            source,
        })?;
        let mut ast = syn::parse_file(&source).map_err(|source| {
            let start = source.span().start();
            LayeringError::Parse {
                path: file.clone(),
                line: start.line,
                column: start.column + 1,
                source,
            }
        })?;
        if is_test_only(&ast.attrs) {
            return Ok(());
        }
        StripTests.visit_file_mut(&mut ast);
        let node = self.files.len();
        self.known.insert(module.clone(), node);
        let mut declared = Vec::new();
        let owner = Owner { node, file: &file };
        self.scan(&ast.items, &module, &owner, &child_dir, false, &mut declared)?;
        self.files.push(Parsed { module, file, ast });
        for child in declared {
            self.load(child.module, child.file, child.child_dir)?;
        }
        Ok(())
    }

    /// Registers the inline modules among `items` (of module `module`, in `owner`'s file) and collects the
    /// file modules they declare.
    fn scan(
        &mut self,
        items: &[Item],
        module: &[String],
        owner: &Owner<'_>,
        dir: &Path,
        inline: bool,
        declared: &mut Vec<Declared>,
    ) -> Result<(), LayeringError> {
        for item in items {
            let Item::Mod(item) = item else { continue };
            let name = item.ident.unraw().to_string();
            let mut child = module.to_vec();
            child.push(name.clone());
            let child_dir = dir.join(&name);
            match &item.content {
                Some((_, items)) => {
                    self.known.insert(child.clone(), owner.node);
                    self.scan(items, &child, owner, &child_dir, true, declared)?;
                }
                None => {
                    let declared_at = Location {
                        file: owner.file.to_path_buf(),
                        line: item.ident.span().start().line,
                    };
                    let (child_file, child_dir) = match path_attribute(item, &child, &declared_at)? {
                        Some(_) if inline => {
                            return Err(LayeringError::UnsupportedPath {
                                module: module_name(&child),
                                declared_at,
                                reason: "#[path] inside an inline module is not supported",
                            });
                        }
                        Some(relative) => {
                            let child_file = owner.file.parent().unwrap_or(Path::new("")).join(relative);
                            let child_dir = child_file.parent().map(Path::to_path_buf).unwrap_or_default();
                            (child_file, child_dir)
                        }
                        None => {
                            let flat = dir.join(format!("{name}.rs"));
                            let nested = child_dir.join("mod.rs");
                            let child_file = match (flat.is_file(), nested.is_file()) {
                                (true, false) => flat,
                                (false, true) => nested,
                                (true, true) => {
                                    return Err(LayeringError::AmbiguousModule {
                                        module: module_name(&child),
                                        declared_at,
                                        candidates: (flat, nested),
                                    });
                                }
                                (false, false) => {
                                    return Err(LayeringError::MissingModule {
                                        module: module_name(&child),
                                        declared_at,
                                        candidates: (flat, nested),
                                    });
                                }
                            };
                            (child_file, child_dir)
                        }
                    };
                    declared.push(Declared {
                        module: child,
                        file: child_file,
                        child_dir,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The value of a `#[path = "..."]` attribute on a module declaration.
fn path_attribute(item: &ItemMod, module: &[String], at: &Location) -> Result<Option<String>, LayeringError> {
    let Some(attr) = item.attrs.iter().find(|attr| attr.path().is_ident("path")) else {
        return Ok(None);
    };
    if let Meta::NameValue(pair) = &attr.meta
        && let Expr::Lit(literal) = &pair.value
        && let Lit::Str(value) = &literal.lit
    {
        return Ok(Some(value.value()));
    }
    Err(LayeringError::UnsupportedPath {
        module: module_name(module),
        declared_at: at.clone(),
        reason: "#[path] without a string value",
    })
}

/// Whether the attributes include a `cfg` that holds only in tests: `cfg(test)`, or `cfg(all(...))` with
/// `test` among its conditions.
fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .filter_map(|attr| attr.parse_args::<Meta>().ok())
        .any(|meta| requires_test(&meta))
}

fn requires_test(meta: &Meta) -> bool {
    match meta {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(Punctuated::<Meta, syn::Token![,]>::parse_terminated)
            .is_ok_and(|conditions| conditions.iter().any(requires_test)),
        _ => false,
    }
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(item) => &item.attrs,
        Item::Enum(item) => &item.attrs,
        Item::ExternCrate(item) => &item.attrs,
        Item::Fn(item) => &item.attrs,
        Item::ForeignMod(item) => &item.attrs,
        Item::Impl(item) => &item.attrs,
        Item::Macro(item) => &item.attrs,
        Item::Mod(item) => &item.attrs,
        Item::Static(item) => &item.attrs,
        Item::Struct(item) => &item.attrs,
        Item::Trait(item) => &item.attrs,
        Item::TraitAlias(item) => &item.attrs,
        Item::Type(item) => &item.attrs,
        Item::Union(item) => &item.attrs,
        Item::Use(item) => &item.attrs,
        _ => &[],
    }
}

fn impl_item_attrs(item: &ImplItem) -> &[Attribute] {
    match item {
        ImplItem::Const(item) => &item.attrs,
        ImplItem::Fn(item) => &item.attrs,
        ImplItem::Type(item) => &item.attrs,
        ImplItem::Macro(item) => &item.attrs,
        _ => &[],
    }
}

fn trait_item_attrs(item: &TraitItem) -> &[Attribute] {
    match item {
        TraitItem::Const(item) => &item.attrs,
        TraitItem::Fn(item) => &item.attrs,
        TraitItem::Type(item) => &item.attrs,
        TraitItem::Macro(item) => &item.attrs,
        _ => &[],
    }
}

/// Removes everything under `#[cfg(test)]`.
struct StripTests;

impl VisitMut for StripTests {
    fn visit_file_mut(&mut self, file: &mut syn::File) {
        file.items.retain(|item| !is_test_only(item_attrs(item)));
        syn::visit_mut::visit_file_mut(self, file);
    }

    fn visit_item_mod_mut(&mut self, item: &mut ItemMod) {
        if let Some((_, items)) = &mut item.content {
            items.retain(|item| !is_test_only(item_attrs(item)));
        }
        syn::visit_mut::visit_item_mod_mut(self, item);
    }

    fn visit_item_impl_mut(&mut self, item: &mut syn::ItemImpl) {
        item.items.retain(|item| !is_test_only(impl_item_attrs(item)));
        syn::visit_mut::visit_item_impl_mut(self, item);
    }

    fn visit_item_trait_mut(&mut self, item: &mut syn::ItemTrait) {
        item.items.retain(|item| !is_test_only(trait_item_attrs(item)));
        syn::visit_mut::visit_item_trait_mut(self, item);
    }

    fn visit_block_mut(&mut self, block: &mut syn::Block) {
        block.stmts.retain(|stmt| match stmt {
            Stmt::Item(item) => !is_test_only(item_attrs(item)),
            Stmt::Local(local) => !is_test_only(&local.attrs),
            Stmt::Macro(mac) => !is_test_only(&mac.attrs),
            Stmt::Expr(..) => true,
        });
        syn::visit_mut::visit_block_mut(self, block);
    }

    fn visit_fields_named_mut(&mut self, fields: &mut syn::FieldsNamed) {
        fields.named = std::mem::take(&mut fields.named)
            .into_iter()
            .filter(|field| !is_test_only(&field.attrs))
            .collect();
        syn::visit_mut::visit_fields_named_mut(self, fields);
    }

    fn visit_item_enum_mut(&mut self, item: &mut syn::ItemEnum) {
        item.variants = std::mem::take(&mut item.variants)
            .into_iter()
            .filter(|variant| !is_test_only(&variant.attrs))
            .collect();
        syn::visit_mut::visit_item_enum_mut(self, item);
    }

    fn visit_expr_match_mut(&mut self, expr: &mut syn::ExprMatch) {
        expr.arms.retain(|arm| !is_test_only(&arm.attrs));
        syn::visit_mut::visit_expr_match_mut(self, expr);
    }
}

/// A leaf of a `use` tree: the full path it names, the name it brings into scope, and where it is written.
struct UseLeaf {
    segments: Vec<String>,
    binds: Option<String>,
    span: Span,
}

fn flatten_use(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    match tree {
        UseTree::Path(path) => {
            prefix.push(path.ident.unraw().to_string());
            flatten_use(&path.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(name) => {
            let leaf = if name.ident == "self" {
                UseLeaf {
                    segments: prefix.clone(),
                    binds: prefix.last().cloned(),
                    span: name.ident.span(),
                }
            } else {
                let name_text = name.ident.unraw().to_string();
                let mut segments = prefix.clone();
                segments.push(name_text.clone());
                UseLeaf {
                    segments,
                    binds: Some(name_text),
                    span: name.ident.span(),
                }
            };
            out.push(leaf);
        }
        UseTree::Rename(rename) => {
            let mut segments = prefix.clone();
            if rename.ident != "self" {
                segments.push(rename.ident.unraw().to_string());
            }
            let bound = rename.rename.unraw().to_string();
            out.push(UseLeaf {
                segments,
                binds: (bound != "_").then_some(bound),
                span: rename.ident.span(),
            });
        }
        UseTree::Glob(glob) => out.push(UseLeaf {
            segments: prefix.clone(),
            binds: None,
            span: glob.star_token.spans[0],
        }),
        UseTree::Group(group) => {
            for tree in &group.items {
                flatten_use(tree, prefix, out);
            }
        }
    }
}

/// Every `use` written directly in a module (file or inline), with that module's path.
fn module_uses<'a>(items: &'a [Item], scope: &[String], out: &mut Vec<(Vec<String>, &'a ItemUse)>) {
    for item in items {
        match item {
            Item::Use(item) => out.push((scope.to_vec(), item)),
            Item::Mod(ItemMod {
                ident,
                content: Some((_, items)),
                ..
            }) => {
                let mut inner = scope.to_vec();
                inner.push(ident.unraw().to_string());
                module_uses(items, &inner, out);
            }
            _ => {}
        }
    }
}

/// Resolves paths, as written in a module, to modules of the crate.
struct Resolver<'a> {
    known: &'a BTreeMap<Vec<String>, usize>,
    /// Per module, the names its `use`s bind to modules of the crate.
    aliases: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
}

impl<'a> Resolver<'a> {
    fn new(known: &'a BTreeMap<Vec<String>, usize>, files: &[Parsed]) -> Self {
        let mut resolver = Self {
            known,
            aliases: HashMap::new(),
        };
        let mut uses = Vec::new();
        for parsed in files {
            module_uses(&parsed.ast.items, &parsed.module, &mut uses);
        }
        let mut leaves = Vec::new();
        for (scope, item) in &uses {
            if item.leading_colon.is_some() {
                continue;
            }
            let mut found = Vec::new();
            flatten_use(&item.tree, &mut Vec::new(), &mut found);
            leaves.extend(found.into_iter().map(|leaf| (scope, leaf)));
        }
        // A `use` may name a module through an alias bound by another `use`: a second pass resolves those.
        for _ in 0..2 {
            for (scope, leaf) in &leaves {
                let Some(name) = &leaf.binds else { continue };
                if let Some((module, consumed)) = resolver.resolve(scope, &leaf.segments)
                    && consumed == leaf.segments.len()
                {
                    resolver
                        .aliases
                        .entry(scope.to_vec())
                        .or_default()
                        .insert(name.clone(), module);
                }
            }
        }
        resolver
    }

    /// The longest module of the crate that is a prefix of `segments` written in module `scope`, and how many
    /// segments it takes; `None` when the path does not start in the crate.
    fn resolve(&self, scope: &[String], segments: &[String]) -> Option<(Vec<String>, usize)> {
        let first = segments.first()?;
        let (mut base, mut consumed) = match first.as_str() {
            "crate" => (Vec::new(), 1),
            "self" => (scope.to_vec(), 1),
            "super" => {
                let mut base = scope.to_vec();
                let mut consumed = 0;
                while segments.get(consumed).is_some_and(|segment| segment == "super") {
                    base.pop()?;
                    consumed += 1;
                }
                (base, consumed)
            }
            name => {
                let mut child = scope.to_vec();
                child.push(name.to_owned());
                if self.known.contains_key(&child) {
                    (child, 1)
                } else {
                    let alias = self.aliases.get(scope).and_then(|aliases| aliases.get(name))?;
                    (alias.clone(), 1)
                }
            }
        };
        for segment in &segments[consumed..] {
            base.push(segment.clone());
            if !self.known.contains_key(&base) {
                base.pop();
                break;
            }
            consumed += 1;
        }
        Some((base, consumed))
    }
}

/// Collects the imports of one file module.
struct EdgeVisitor<'r, 'a> {
    resolver: &'r Resolver<'a>,
    /// The module (file or inline) being read.
    scope: Vec<String>,
    node: usize,
    file: &'r Path,
    imports: &'r mut BTreeMap<usize, Location>,
}

impl EdgeVisitor<'_, '_> {
    fn reference(&mut self, segments: &[String], span: Span) {
        let Some((module, _)) = self.resolver.resolve(&self.scope, segments) else {
            return;
        };
        let Some(&to) = self.resolver.known.get(&module) else {
            return;
        };
        if to == self.node {
            return;
        }
        let line = span.start().line;
        self.imports
            .entry(to)
            .and_modify(|at| at.line = at.line.min(line))
            .or_insert_with(|| Location {
                file: self.file.to_path_buf(),
                line,
            });
    }

    fn use_tree(&mut self, tree: &UseTree, prefix: &mut Vec<String>) {
        let mut leaves = Vec::new();
        flatten_use(tree, prefix, &mut leaves);
        for leaf in leaves {
            self.reference(&leaf.segments, leaf.span);
        }
    }

    /// Finds the paths in the tokens of a macro: `a::b...` not preceded by `::` or `$`, and `a::{...}` trees.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut at = 0;
        while at < trees.len() {
            match &trees[at] {
                TokenTree::Group(group) => {
                    let restriction = group.delimiter() == Delimiter::Parenthesis
                        && at > 0
                        && matches!(&trees[at - 1], TokenTree::Ident(ident) if ident == "pub");
                    if !restriction {
                        self.scan_tokens(group.stream());
                    }
                    at += 1;
                }
                TokenTree::Ident(ident)
                    if !is_path_inside(&trees, at) && is_path_separator(&trees, at + 1) =>
                {
                    let mut segments = vec![ident.unraw().to_string()];
                    let mut next = at + 1;
                    while is_path_separator(&trees, next) {
                        match trees.get(next + 2) {
                            Some(TokenTree::Ident(segment)) => {
                                segments.push(segment.unraw().to_string());
                                next += 3;
                            }
                            _ => break,
                        }
                    }
                    if is_path_separator(&trees, next)
                        && let Some(TokenTree::Group(group)) = trees.get(next + 2)
                        && group.delimiter() == Delimiter::Brace
                        && let Ok(tree) =
                            Punctuated::<UseTree, syn::Token![,]>::parse_terminated.parse2(group.stream())
                    {
                        for tree in &tree {
                            self.use_tree(tree, &mut segments.clone());
                        }
                        at = next + 3;
                        continue;
                    }
                    // `name::<T>` with nothing after is a turbofish, not a module path.
                    if segments.len() > 1 {
                        self.reference(&segments, ident.span());
                    }
                    at = next;
                }
                _ => at += 1,
            }
        }
    }
}

/// Whether the identifier at `at` continues a path (`a::b`) or is a macro variable (`$crate`, `$name`).
fn is_path_inside(trees: &[TokenTree], at: usize) -> bool {
    let variable = at >= 1 && matches!(&trees[at - 1], TokenTree::Punct(punct) if punct.as_char() == '$');
    variable || (at >= 2 && is_path_separator(trees, at - 2))
}

/// Whether the tokens at `at` and `at + 1` are `::`.
fn is_path_separator(trees: &[TokenTree], at: usize) -> bool {
    matches!(
        (trees.get(at), trees.get(at + 1)),
        (Some(TokenTree::Punct(first)), Some(TokenTree::Punct(second)))
            if first.as_char() == ':' && first.spacing() == proc_macro2::Spacing::Joint && second.as_char() == ':'
    )
}

impl<'ast> Visit<'ast> for EdgeVisitor<'_, '_> {
    fn visit_item_mod(&mut self, item: &'ast ItemMod) {
        let Some((_, items)) = &item.content else {
            return;
        };
        let mut inner = self.scope.clone();
        inner.push(item.ident.unraw().to_string());
        // A module inside a function body is not a module of the crate's tree: read it as its surroundings.
        let known = self.resolver.known.contains_key(&inner);
        let outer = if known {
            Some(std::mem::replace(&mut self.scope, inner))
        } else {
            None
        };
        for item in items {
            self.visit_item(item);
        }
        if let Some(outer) = outer {
            self.scope = outer;
        }
    }

    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        if item.leading_colon.is_none() {
            self.use_tree(&item.tree, &mut Vec::new());
        }
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_attribute(&mut self, _: &'ast Attribute) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        // A path of one segment names a value, type or macro, never a module.
        if path.leading_colon.is_none()
            && path.segments.len() > 1
            && let Some(first) = path.segments.first()
        {
            let segments: Vec<String> = path
                .segments
                .iter()
                .map(|segment| segment.ident.unraw().to_string())
                .collect();
            self.reference(&segments, first.ident.span());
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.scan_tokens(mac.tokens.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a crate of `(path, source)` files to a fresh directory and reads its graph.
    fn read(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<ModuleGraph, LayeringError>) {
        let dir = tempfile::tempdir().unwrap();
        for (path, source) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, source).unwrap();
        }
        let graph = ModuleGraph::load(dir.path());
        (dir, graph)
    }

    fn graph(files: &[(&str, &str)]) -> (tempfile::TempDir, ModuleGraph) {
        let (dir, graph) = read(files);
        (dir, graph.unwrap())
    }

    /// Each cycle as its module names, the first repeated at the end.
    fn cycles(graph: &ModuleGraph) -> Vec<Vec<String>> {
        graph
            .cycles()
            .iter()
            .map(|cycle| cycle.names().into_iter().map(str::to_owned).collect())
            .collect()
    }

    fn imports<'g>(graph: &'g ModuleGraph, module: &str) -> Vec<&'g str> {
        graph.imports_of(module).unwrap()
    }

    #[test]
    fn a_cycle_through_crate_paths_is_found_with_its_lines() {
        let (dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "pub struct T;\n\npub fn f() {\n    crate::b::g();\n}\n"),
            (
                "b.rs",
                "pub fn g() {}\n\npub fn h() -> crate::a::T {\n    crate::a::T\n}\n",
            ),
        ]);
        assert_eq!(cycles(&graph), [["a", "b", "a"]]);
        let cycle = &graph.cycles()[0];
        assert_eq!(cycle.modules, ["a", "b"]);
        assert_eq!(
            cycle.path[0].at,
            Location {
                file: dir.path().join("a.rs"),
                line: 4
            }
        );
        assert_eq!(
            cycle.path[1].at,
            Location {
                file: dir.path().join("b.rs"),
                line: 3
            }
        );
        assert!(matches!(
            graph.layers(),
            Err(LayeringError::Cyclic { count: 1, .. })
        ));
    }

    #[test]
    fn a_child_naming_its_parent_through_super_while_the_parent_calls_it_is_a_cycle() {
        let (_dir, graph) = graph(&[
            (
                "lib.rs",
                "mod child;\n\npub struct Thing;\n\npub fn run() {\n    child::go();\n}\n",
            ),
            ("child.rs", "pub fn go() -> super::Thing {\n    super::Thing\n}\n"),
        ]);
        assert_eq!(imports(&graph, "crate"), ["child"]);
        assert_eq!(imports(&graph, "child"), ["crate"]);
        assert_eq!(cycles(&graph), [["crate", "child", "crate"]]);
    }

    #[test]
    fn a_parent_declaring_a_child_it_does_not_use_is_no_import() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "pub mod child;\n"),
            ("child.rs", "use crate::Other;\n"),
        ]);
        assert_eq!(imports(&graph, "crate"), Vec::<&str>::new());
        assert!(graph.cycles().is_empty());
    }

    #[test]
    fn every_leaf_of_a_brace_use_tree_is_an_import() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::{\n    b::{self, X},\n    c::Y as Z,\n};\n"),
            ("b.rs", "pub struct X;\nuse crate::a;\n"),
            ("c.rs", "pub struct Y;\n"),
        ]);
        assert_eq!(imports(&graph, "a"), ["b", "c"]);
        assert_eq!(cycles(&graph), [["a", "b", "a"]]);
        assert_eq!(graph.cycles()[0].path[0].at.line, 2);
    }

    #[test]
    fn a_glob_import_names_its_module() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "pub use crate::b::*;\n"),
            ("b.rs", "use super::a::*;\n"),
        ]);
        assert_eq!(cycles(&graph), [["a", "b", "a"]]);
    }

    #[test]
    fn a_path_inside_a_macro_call_is_an_import() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            (
                "a.rs",
                "pub fn f() {\n    tracing::info!(name = %crate::b::NAME, \"ready\");\n}\n",
            ),
            (
                "b.rs",
                "pub const NAME: &str = \"b\";\nfn g() -> String {\n    format!(\"{:?}\", super::a::f())\n}\n",
            ),
            ("c.rs", "fn h() {\n    let _ = vec![crate::b::NAME];\n}\n"),
        ]);
        assert_eq!(imports(&graph, "c"), ["b"]);
        assert_eq!(cycles(&graph), [["a", "b", "a"]]);
        assert_eq!(graph.cycles()[0].path[0].at.line, 2);
    }

    #[test]
    fn test_code_is_no_import() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            (
                "a.rs",
                "pub fn f() {}\n\
                 #[cfg(test)]\nuse crate::b::X;\n\
                 #[cfg(test)]\nfn helper() { crate::b::g(); }\n\
                 #[cfg(all(test, unix))]\nfn unix_helper() { crate::b::g(); }\n\
                 pub struct S {\n    #[cfg(test)]\n    b: crate::b::X,\n}\n\
                 impl S {\n    #[cfg(test)]\n    fn fixture() -> crate::b::X { crate::b::X }\n}\n\
                 fn body() {\n    #[cfg(test)]\n    let _ = crate::b::g();\n}\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::b::*;\n}\n\
                 #[cfg(test)]\nmod file_tests;\n",
            ),
            ("a/file_tests.rs", "use crate::b::g;\n"),
            ("b.rs", "pub struct X;\npub fn g() { crate::a::f() }\n"),
        ]);
        assert_eq!(imports(&graph, "a"), Vec::<&str>::new());
        assert_eq!(imports(&graph, "b"), ["a"]);
        assert_eq!(graph.modules(), ["crate", "a", "b"]);
        assert!(graph.cycles().is_empty());
    }

    #[test]
    fn a_file_that_is_test_only_is_no_module() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\nmod support;\n"),
            ("support.rs", "#![cfg(test)]\nuse crate::a::*;\n"),
            ("a.rs", "pub fn f() { crate::support::fixture() }\n"),
            ("b.rs", "pub fn g() { crate::a::f() }\n"),
        ]);
        assert_eq!(graph.modules(), ["crate", "a", "b"]);
        assert_eq!(imports(&graph, "a"), ["crate"]);
    }

    #[test]
    fn visibility_restrictions_macro_variables_turbofish_and_other_crates_are_no_import() {
        let (_dir, graph) = graph(&[
            (
                "lib.rs",
                "mod a;\nmod b;\nmod parse;\n\
                 /// See [`crate::b::Thing`].\n\
                 pub(in crate::b) fn f(s: &str) -> u32 {\n    s.parse::<u32>().unwrap_or(0)\n}\n\
                 pub(crate) struct S { pub(super) n: std::num::NonZeroU8 }\n\
                 macro_rules! m { () => { $crate::b::Thing } }\n\
                 wrap! { pub(in crate::b) struct U; }\n\
                 fn g() { tracing::info!(\"{}\", ::b::x()); }\n\
                 fn h() -> parse { parse }\n\
                 #[derive(b::Derive)]\n\
                 struct T;\n",
            ),
            ("a.rs", ""),
            ("b.rs", "pub struct Thing;\n"),
            ("parse.rs", ""),
        ]);
        assert_eq!(imports(&graph, "crate"), Vec::<&str>::new());
    }

    #[test]
    fn a_module_alias_from_a_use_resolves_later_paths() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod caller;\nmod outer;\nmod user;\n"),
            ("outer.rs", "pub mod inner;\n"),
            ("outer/inner.rs", "pub fn f() {}\n"),
            (
                "user.rs",
                "use crate::outer;\nuse outer::inner as deep;\n\nfn g() {\n    deep::f();\n}\n",
            ),
            (
                "caller.rs",
                "use crate::outer;\n\nfn g() {\n    outer::inner::f();\n}\n",
            ),
        ]);
        assert_eq!(imports(&graph, "user"), ["outer", "outer::inner"]);
        assert_eq!(imports(&graph, "caller"), ["outer", "outer::inner"]);
        let deep = |from: &str| {
            let edges = graph.imports();
            edges
                .iter()
                .find(|edge| edge.from == from && edge.to == "outer::inner")
                .unwrap()
                .at
                .line
        };
        assert_eq!(deep("user"), 2);
        assert_eq!(deep("caller"), 4);
    }

    #[test]
    fn mod_rs_and_nested_file_layouts_are_both_read() {
        let (dir, graph) = graph(&[
            ("lib.rs", "pub mod a;\npub mod c;\n"),
            ("a/mod.rs", "pub mod b;\n"),
            ("a/b.rs", "pub struct X;\n"),
            ("c.rs", "pub mod d;\n"),
            (
                "c/d.rs",
                "pub mod e;\npub fn f() -> crate::a::b::X { e::make() }\n",
            ),
            (
                "c/d/e.rs",
                "pub fn make() -> super::super::super::a::b::X { crate::a::b::X }\n",
            ),
        ]);
        assert_eq!(graph.modules(), ["crate", "a", "a::b", "c", "c::d", "c::d::e"]);
        assert_eq!(imports(&graph, "c::d"), ["a::b", "c::d::e"]);
        assert_eq!(imports(&graph, "c::d::e"), ["a::b"]);
        let layers = graph.layers().unwrap();
        assert_eq!(
            layers,
            [vec!["crate", "a", "a::b", "c"], vec!["c::d::e"], vec!["c::d"]]
        );
        assert!(dir.path().join("a/mod.rs").is_file());
    }

    #[test]
    fn an_inline_module_belongs_to_its_file_but_resolves_paths_as_a_module() {
        let (_dir, graph) = graph(&[
            (
                "lib.rs",
                "mod a;\nmod b;\npub mod inner {\n    pub fn f() { super::helper() }\n    pub mod deeper {\n        use super::super::a::X;\n        mod nested_file;\n    }\n}\nfn helper() {}\n",
            ),
            (
                "inner/deeper/nested_file.rs",
                "pub fn g() { super::super::f() }\n",
            ),
            ("a.rs", "pub struct X;\n"),
            ("b.rs", "use crate::inner::deeper::X;\n"),
        ]);
        assert_eq!(graph.modules(), ["crate", "a", "b", "inner::deeper::nested_file"]);
        assert_eq!(imports(&graph, "crate"), ["a"]);
        assert_eq!(imports(&graph, "b"), ["crate"]);
        assert_eq!(imports(&graph, "inner::deeper::nested_file"), ["crate"]);
        assert_eq!(
            graph
                .imports()
                .iter()
                .find(|edge| edge.from == "crate")
                .unwrap()
                .at
                .line,
            6
        );
    }

    #[test]
    fn a_path_attribute_is_followed() {
        let (_dir, graph) = graph(&[
            (
                "lib.rs",
                "#[path = \"elsewhere/impl.rs\"]\nmod a;\npub fn f() { a::g() }\n",
            ),
            ("elsewhere/impl.rs", "pub fn g() { child::h() }\nmod child;\n"),
            ("elsewhere/child.rs", "pub fn h() { crate::f() }\n"),
        ]);
        assert_eq!(graph.modules(), ["crate", "a", "a::child"]);
        assert_eq!(cycles(&graph), [["crate", "a", "a::child", "crate"]]);
    }

    #[test]
    fn an_acyclic_crate_has_layers_and_no_cycles() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\npub use c::Top;\n"),
            ("a.rs", "pub struct Leaf;\n"),
            ("b.rs", "use crate::a::Leaf;\npub struct Mid(Leaf);\n"),
            ("c.rs", "pub struct Top(crate::b::Mid, super::a::Leaf);\n"),
            (
                "d.rs",
                "pub fn alone() -> std::time::Duration { Default::default() }\n",
            ),
        ]);
        assert!(graph.cycles().is_empty());
        assert_eq!(
            graph.layers().unwrap(),
            [vec!["a", "d"], vec!["b"], vec!["c"], vec!["crate"]]
        );
        assert_eq!(graph.import_count(), 4);
        let text = graph.render();
        assert!(text.contains("layer 2\n  c -> a, b\n"), "{text}");
        assert!(text.ends_with("no import cycles\n"), "{text}");
    }

    #[test]
    fn a_tangle_is_reported_as_one_shortest_cycle_and_cycles_are_sorted() {
        let (_dir, graph) = graph(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod x;\nmod y;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b.rs", "use crate::c::C;\nuse crate::a::A;\npub struct B;\n"),
            ("c.rs", "use crate::a::A;\npub struct C;\n"),
            ("y.rs", "use crate::x::X;\npub struct Y;\n"),
            ("x.rs", "use crate::y::Y;\npub struct X;\n"),
        ]);
        assert_eq!(cycles(&graph), [vec!["a", "b", "a"], vec!["x", "y", "x"]]);
        assert_eq!(graph.cycles()[0].modules, ["a", "b", "c"]);
        let text = graph.render();
        assert!(
            text.contains("2 import cycle(s):\ncycle 1: a -> b -> a\n"),
            "{text}"
        );
        assert!(text.contains("  a -> b at "), "{text}");
    }

    #[test]
    fn a_missing_module_file_is_a_clear_error() {
        let (dir, graph) = read(&[("lib.rs", "mod present;\n\nmod absent;\n"), ("present.rs", "")]);
        let error = graph.unwrap_err();
        assert!(matches!(&error, LayeringError::MissingModule { module, .. } if module == "absent"));
        let text = error.to_string();
        let lib = dir.path().join("lib.rs");
        assert!(
            text.starts_with(&format!("{}:3: module `absent` has no file", lib.display())),
            "{text}"
        );
        assert!(
            text.contains(&dir.path().join("absent.rs").display().to_string()),
            "{text}"
        );
        assert!(
            text.contains(&dir.path().join("absent/mod.rs").display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn invalid_rust_is_an_error_with_its_place() {
        let (dir, graph) = read(&[("lib.rs", "mod a;\n"), ("a.rs", "pub fn f() {}\n\nstruct ;\n")]);
        let error = graph.unwrap_err();
        assert!(
            matches!(&error, LayeringError::Parse { path, line: 3, .. } if *path == dir.path().join("a.rs")),
            "{error}"
        );
    }
}
