//! The report (pure): the JSON document (schema `bulkhead.dev/verify/v1`, documented in docs/verify.md) and the
//! human report: violations first, then the tenant × tenant matrix, the allowed flows, the route table and every
//! check with its verdict.

use std::fmt::Write as _;

use serde::Serialize;

use super::check::{Check, Verdict};
use super::network::{Matrix, Place};
use super::routing::Row;

/// The JSON document's schema; bumped on any change that is not a pure addition.
pub const SCHEMA: &str = "bulkhead.dev/verify/v1";

/// Where the JSON Schema of the document is checked in, from the repository's root (`make generate` writes it).
pub const SCHEMA_FILE: &str = "docs/verify.schema.json";

/// The JSON Schema of the JSON document, as `make generate` writes it to [`SCHEMA_FILE`].
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(Report);
    schema.insert("$id".into(), SCHEMA.into());
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// Above this many places, the human report lists flows instead of drawing the grid.
pub const GRID_LIMIT: usize = 40;

/// Which cluster and which software the report is about.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Identity {
    /// The UID of the cluster's `kube-system` namespace.
    pub cluster_uid: Option<String>,
    /// The kubeconfig context, when one was named.
    pub context: Option<String>,
    /// The API server's version.
    pub kubernetes_version: Option<String>,
    /// The PostgreSQL server's version, when it was inspected.
    pub postgres_version: Option<String>,
    /// This binary's version.
    pub bulkhead_version: String,
}

/// The counts of the checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// Whether the contract holds (no check failed).
    pub holds: bool,
    /// Checks that passed.
    pub pass: usize,
    /// Checks with a warning.
    pub warn: usize,
    /// Checks that failed.
    pub fail: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// When the state was read (RFC 3339, UTC).
    pub generated_at: String,
    /// The cluster and versions.
    pub identity: Identity,
    /// The counts.
    pub summary: Summary,
    /// The reachability matrix.
    pub matrix: Matrix,
    /// The gateway's route table.
    pub routes: Vec<Row>,
    /// Every check, failures first, then warnings, then passes.
    pub checks: Vec<Check>,
}

impl Report {
    /// The report of these checks, sorted (failures first).
    pub fn new(
        generated_at: String,
        identity: Identity,
        matrix: Matrix,
        routes: Vec<Row>,
        mut checks: Vec<Check>,
    ) -> Report {
        checks.sort_by(|a, b| {
            b.verdict
                .cmp(&a.verdict)
                .then_with(|| a.id.cmp(b.id))
                .then_with(|| a.subject.cmp(&b.subject))
        });
        let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
        let summary = Summary {
            holds: count(Verdict::Fail) == 0,
            pass: count(Verdict::Pass),
            warn: count(Verdict::Warn),
            fail: count(Verdict::Fail),
        };
        Report {
            schema: SCHEMA,
            generated_at,
            identity,
            summary,
            matrix,
            routes,
            checks,
        }
    }

    /// The process's exit code: 0 when the contract holds, 1 when a check failed.
    pub fn exit_code(&self) -> u8 {
        if self.summary.holds { 0 } else { 1 }
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(
            out,
            "Bulkhead isolation report ({SCHEMA})\ncluster {} · Kubernetes {} · PostgreSQL {} · bulkhead {} · {}",
            self.identity.cluster_uid.as_deref().unwrap_or("unknown"),
            self.identity.kubernetes_version.as_deref().unwrap_or("unknown"),
            self.identity
                .postgres_version
                .as_deref()
                .unwrap_or("not inspected"),
            self.identity.bulkhead_version,
            self.generated_at
        );
        let _ = writeln!(
            out,
            "\nResult: {} ({} failed, {} warnings, {} passed)",
            if s.holds {
                "the isolation contract holds"
            } else {
                "THE ISOLATION CONTRACT IS BROKEN"
            },
            s.fail,
            s.warn,
            s.pass
        );
        let failures: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(out, "\n== Violations");
            for c in &failures {
                let _ = writeln!(out, "FAIL {} {}: {}", c.id, c.subject, c.summary);
            }
        }
        let _ = writeln!(
            out,
            "\n== Reachability (A: a connection can be made, .: refused, ?: nothing stands for the place)"
        );
        out.push_str(&self.render_grid());
        let _ = writeln!(out, "\n== Allowed flows between different places");
        let mut any = false;
        for (s, d) in &self.matrix.allowed {
            if s == d {
                continue;
            }
            any = true;
            let _ = writeln!(
                out,
                "{} -> {}",
                self.matrix.places[*s].label(),
                self.matrix.places[*d].label()
            );
        }
        if !any {
            let _ = writeln!(out, "(none)");
        }
        let _ = writeln!(out, "\n== Routes (org -> stack)");
        for r in &self.routes {
            let _ = writeln!(
                out,
                "{} -> {} ({}{})",
                r.org,
                r.upstream,
                r.tenant,
                r.customer.as_deref().map(|c| format!("/{c}")).unwrap_or_default()
            );
        }
        if self.routes.is_empty() {
            let _ = writeln!(out, "(none)");
        }
        let _ = writeln!(out, "\n== Checks");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<4} {} {}: {}",
                c.verdict.as_str().to_uppercase(),
                c.id,
                c.subject,
                c.summary
            );
        }
        out
    }

    fn render_grid(&self) -> String {
        let m = &self.matrix;
        if m.places.len() > GRID_LIMIT {
            return format!(
                "({} places: too many for a grid; the allowed flows are listed below and every cell is in the JSON document)\n",
                m.places.len()
            );
        }
        let mut out = String::new();
        let labels: Vec<String> = m.places.iter().map(Place::label).collect();
        let width = labels.iter().map(String::len).max().unwrap_or(4).max(9);
        let _ = writeln!(out, "{:>width$}  columns:", "from \\ to");
        for (i, l) in labels.iter().enumerate() {
            let _ = writeln!(out, "{:>width$}  {i:>2} = {l}", "");
        }
        let _ = write!(out, "{:>width$} ", "");
        for i in 0..labels.len() {
            let _ = write!(out, "{i:>3}");
        }
        out.push('\n');
        for s in &m.sources {
            let _ = write!(out, "{:>width$} ", labels[*s]);
            for d in &m.destinations {
                let mark = if m.unrepresented.contains(s) || m.unrepresented.contains(d) {
                    "?"
                } else if m.allowed.binary_search(&(*s, *d)).is_ok() {
                    "A"
                } else {
                    "."
                };
                let _ = write!(out, "{mark:>3}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_checked_in_json_schema_matches_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(SCHEMA_FILE);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == json_schema(),
            "{} is out of date; run `make generate`",
            path.display()
        );
        let schema: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
        assert_eq!(schema["$id"], SCHEMA);
        for field in [
            "schema",
            "generated_at",
            "identity",
            "summary",
            "matrix",
            "routes",
            "checks",
        ] {
            assert!(schema["properties"][field].is_object(), "{field}");
        }
    }
}
