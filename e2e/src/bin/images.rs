//! `images`: writes Bulkhead's container images as OCI archives, without Docker or a registry.
//!
//! - `images --out DIR [--version V]`: the operator, the gateway and the test stack from the static binaries of
//!   `make images`, as DIR/operator.tar, DIR/gateway.tar and DIR/stack.tar.
//! - `images single --reference REF --file SRC:/path[:mode] … --entrypoint /path --out FILE`: any image.
//! - `images digest FILE`: the manifest digest of an archive.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use bulkhead_e2e::oci::{self, ImageFile, ImageSpec, OciError};

/// Why `images` failed.
#[derive(Debug, thiserror::Error)]
enum ImagesError {
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("{value:?}: {reason}")]
    Argument { value: String, reason: &'static str },
    #[error("{0}")]
    Missing(String),
}

/// Where `make images` puts the static binaries (relative to the repository root).
const STATIC_RELEASE_DIR: &str = "target/x86_64-unknown-linux-gnu/release";

#[derive(Debug, Parser)]
#[command(
    name = "images",
    about = "Writes OCI image archives (for ctr images import, kind load image-archive, docker load)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory for operator.tar, gateway.tar and stack.tar.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The tag of the product images.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    version: String,
    /// Directory holding the static bulkhead-operator, bulkhead-gateway and bulkhead-stack binaries.
    #[arg(long, default_value = STATIC_RELEASE_DIR)]
    binaries: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write one image from the given files and settings.
    Single(Box<SingleArgs>),
    /// Print the manifest digest of an image archive.
    Digest {
        /// The archive.
        archive: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct SingleArgs {
    /// The full reference with a tag, e.g. registry.k8s.io/pause:3.10.
    #[arg(long)]
    reference: String,
    /// A file as SRC:/path/in/image[:octal mode]; the mode defaults to 755 for executable sources, else 644.
    #[arg(long = "file", value_name = "SRC:/PATH[:MODE]", required = true)]
    files: Vec<String>,
    /// The entrypoint; repeat for more words.
    #[arg(long, required = true, allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// The default arguments; repeat for more words.
    #[arg(long, allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// An environment variable NAME=value; repeatable.
    #[arg(long)]
    env: Vec<String>,
    /// The user as uid:gid (0:0 for root).
    #[arg(long, default_value = oci::DEFAULT_USER)]
    user: String,
    /// The working directory.
    #[arg(long, default_value = "")]
    workdir: String,
    /// An exposed port, e.g. 53/udp; repeatable.
    #[arg(long = "port")]
    ports: Vec<String>,
    /// A label KEY=value; repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// The archive to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Single(args)) => single(*args),
        Some(Command::Digest { archive }) => oci::manifest_digest(&archive)
            .map(|digest| println!("{digest}"))
            .map_err(ImagesError::from),
        None => match cli.out {
            Some(out) => products(&cli.binaries, &cli.version, &out),
            None => Cli::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--out DIR is required to write the product images",
                )
                .exit(),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("images: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The CA bundle the operator (Postgres over TLS) and the gateway (JWKS over HTTPS) verify servers with; Debian's
/// `ca-certificates`, at the path rustls-native-certs reads.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The operator, the gateway and the stack: one static binary each on an empty base, non-root; the operator and
/// the gateway also carry the CA bundle.
fn products(binaries: &Path, version: &str, out: &Path) -> Result<(), ImagesError> {
    let products = [
        (
            "operator",
            "bulkhead-operator",
            vec!["run"],
            vec!["8080/tcp"],
            true,
        ),
        (
            "gateway",
            "bulkhead-gateway",
            vec!["run"],
            vec!["8443/tcp", "9090/tcp"],
            true,
        ),
        ("stack", "bulkhead-stack", vec![], vec!["8080/tcp"], false),
    ];
    for (name, binary, cmd, ports, ca) in products {
        let mut spec = ImageSpec::new(
            format!("bulkhead.dev/{name}:{version}"),
            vec![format!("/{binary}")],
        );
        spec.files = vec![ImageFile::executable(binaries.join(binary), format!("/{binary}"))];
        if ca {
            if !Path::new(CA_BUNDLE).is_file() {
                return Err(ImagesError::Missing(format!(
                    "{CA_BUNDLE} is missing: install Debian's ca-certificates (the {name} image carries it)"
                )));
            }
            spec.files.push(ImageFile {
                source: CA_BUNDLE.into(),
                path_in_image: CA_BUNDLE.to_owned(),
                mode: 0o644,
            });
        }
        spec.cmd = cmd.into_iter().map(str::to_owned).collect();
        spec.exposed_ports = ports.into_iter().map(str::to_owned).collect();
        spec.labels = BTreeMap::from([
            ("org.opencontainers.image.title".to_owned(), binary.to_owned()),
            ("org.opencontainers.image.version".to_owned(), version.to_owned()),
            (
                "org.opencontainers.image.licenses".to_owned(),
                "Apache-2.0".to_owned(),
            ),
        ]);
        let archive = out.join(format!("{name}.tar"));
        let written = oci::write_archive(&spec, &archive)?;
        println!("{} {} {}", spec.reference, written.manifest, archive.display());
    }
    Ok(())
}

fn single(args: SingleArgs) -> Result<(), ImagesError> {
    let mut spec = ImageSpec::new(args.reference, args.entrypoint);
    spec.files = args
        .files
        .iter()
        .map(|file| parse_file(file))
        .collect::<Result<_, _>>()?;
    spec.cmd = args.cmd;
    spec.env = args.env;
    spec.user = args.user;
    spec.working_dir = args.workdir;
    spec.exposed_ports = args.ports;
    spec.labels = args
        .labels
        .iter()
        .map(|label| match label.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(ImagesError::Argument {
                value: label.clone(),
                reason: "a label is KEY=value",
            }),
        })
        .collect::<Result<_, _>>()?;
    let written = oci::write_archive(&spec, &args.out)?;
    println!("{} {} {}", spec.reference, written.manifest, args.out.display());
    Ok(())
}

/// `SRC:/path/in/image[:mode]`, the mode in octal.
fn parse_file(file: &str) -> Result<ImageFile, ImagesError> {
    let invalid = |reason| ImagesError::Argument {
        value: file.to_owned(),
        reason,
    };
    let (rest, mode) = match file.rsplit_once(':') {
        Some((rest, mode))
            if rest.contains(":/") && !mode.is_empty() && mode.chars().all(|c| ('0'..='7').contains(&c)) =>
        {
            let mode = u32::from_str_radix(mode, 8).map_err(|_| invalid("the mode is octal, e.g. 755"))?;
            (rest, Some(mode))
        }
        _ => (file, None),
    };
    let Some((source, path)) = rest.rsplit_once(":/") else {
        return Err(invalid("a file is SRC:/path/in/image[:mode]"));
    };
    if source.is_empty() {
        return Err(invalid("the source is empty"));
    }
    let source = PathBuf::from(source);
    let mode = match mode {
        Some(mode) => mode,
        None => {
            let metadata = std::fs::metadata(&source).map_err(|err| OciError::Io {
                path: source.clone(),
                source: err,
            })?;
            if metadata.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            }
        }
    };
    Ok(ImageFile {
        source,
        path_in_image: format!("/{path}"),
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_arguments_name_a_source_a_path_and_maybe_a_mode() {
        let file = parse_file("/cache/bin/coredns:/coredns:755").unwrap();
        assert_eq!(file.source, PathBuf::from("/cache/bin/coredns"));
        assert_eq!(file.path_in_image, "/coredns");
        assert_eq!(file.mode, 0o755);
        let file = parse_file("Corefile:/etc/coredns/Corefile:0644").unwrap();
        assert_eq!(file.source, PathBuf::from("Corefile"));
        assert_eq!(file.path_in_image, "/etc/coredns/Corefile");
        assert_eq!(file.mode, 0o644);
        for bad in ["/bin/pause", ":/pause:755", "pause:relative"] {
            assert!(parse_file(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_mode_defaults_from_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("agnhost");
        std::fs::write(&binary, b"").unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o700)).unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, b"").unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            parse_file(&format!("{}:/agnhost", binary.display()))
                .unwrap()
                .mode,
            0o755
        );
        assert_eq!(
            parse_file(&format!("{}:/etc/config", config.display()))
                .unwrap()
                .mode,
            0o644
        );
    }
}
