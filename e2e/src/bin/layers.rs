//! `layers <crate src dir>...`: prints each crate's module graph as layers, bottom first, each module with the
//! modules it imports, then every import cycle with the lines that make it (see `bulkhead_e2e::layering` for
//! what counts as a module and as an import). Exit status 1 when a crate has a cycle, 2 when one cannot be
//! read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use bulkhead_e2e::layering::ModuleGraph;

/// Prints each crate's module graph as layers and its import cycles.
#[derive(Debug, Parser)]
#[command(name = "layers")]
struct Args {
    /// A crate's source directory, holding its lib.rs (or main.rs).
    #[arg(required = true)]
    src_dirs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut status = ExitCode::SUCCESS;
    for (number, dir) in args.src_dirs.iter().enumerate() {
        if number > 0 {
            println!();
        }
        match ModuleGraph::load(dir) {
            Ok(graph) => {
                print!("{}", graph.render());
                if !graph.cycles().is_empty() && status == ExitCode::SUCCESS {
                    status = ExitCode::from(1);
                }
            }
            Err(error) => {
                eprintln!("layers: {error}");
                status = ExitCode::from(2);
            }
        }
    }
    status
}
