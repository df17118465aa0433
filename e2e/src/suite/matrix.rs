//! The traffic matrix (pure): which source may reach which destination under the isolation contract, what was
//! observed, and the printed grid with its counts.
//!
//! A refusal counts only next to a working connection of the same source in the same run: a pod that reaches
//! nothing proves nothing, so its refusals are reported as unproven, which fails the run like a differing cell.

use std::collections::BTreeMap;
use std::fmt;

/// A stack the suite runs: one per Tenant and per Customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// A short label for the grid (`a`, `a1`, …).
    pub label: String,
    /// The Tenant it belongs to (the Tenant's own name for a Tenant).
    pub tenant: String,
    /// The Customer's name, for a Customer's stack.
    pub customer: Option<String>,
    /// Its namespace.
    pub namespace: String,
    /// Whether it has a database (and so an egress policy to PostgreSQL).
    pub database: bool,
}

/// Where a connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A pod of the stack with this index.
    Stack(usize),
    /// A gateway pod.
    Gateway,
    /// A pod in a namespace Bulkhead does not manage.
    Outsider,
}

/// Where a connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// The Service of the stack with this index.
    StackService(usize),
    /// A pod IP of the stack with this index.
    StackPod(usize),
    /// The outsider pod's IP.
    Outsider,
    /// The Kubernetes API server (the `kubernetes` Service).
    ApiServer,
    /// Cluster DNS (its Service, TCP 53).
    Dns,
    /// The PostgreSQL server the stacks use.
    Postgres,
    /// An address outside the cluster.
    Outside,
}

/// Allowed (a connection was made) or refused (it was not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// The connection was made.
    Allowed,
    /// The connection was not made (refused, reset, timed out or unreachable).
    Refused,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allowed => "allowed",
            Verdict::Refused => "refused",
        })
    }
}

/// What the contract says about one cell, and which rule says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    /// Allowed or refused.
    pub verdict: Verdict,
    /// The class of the cell (one rule of the contract), for counting and for the failure list.
    pub class: &'static str,
}

const fn allow(class: &'static str) -> Expectation {
    Expectation {
        verdict: Verdict::Allowed,
        class,
    }
}

const fn refuse(class: &'static str) -> Expectation {
    Expectation {
        verdict: Verdict::Refused,
        class,
    }
}

/// The isolation contract for one cell.
pub fn expect(stacks: &[Stack], source: Source, destination: Destination) -> Expectation {
    use Destination as D;
    match source {
        Source::Stack(s) => {
            let from = &stacks[s];
            match destination {
                D::StackService(d) | D::StackPod(d) => {
                    let to = &stacks[d];
                    if from.namespace == to.namespace {
                        allow("same namespace")
                    } else if from.tenant != to.tenant {
                        refuse("tenant to other tenant")
                    } else {
                        refuse("customer boundary")
                    }
                }
                D::Outsider => refuse("stack to unmanaged namespace"),
                D::ApiServer => refuse("stack to API server"),
                D::Dns => allow("stack to DNS"),
                D::Postgres if from.database => allow("stack to its database server"),
                D::Postgres => refuse("stack without database to PostgreSQL"),
                D::Outside => refuse("stack to outside the cluster"),
            }
        }
        Source::Gateway => match destination {
            D::StackService(_) | D::StackPod(_) => allow("gateway to stack"),
            D::Outsider => refuse("gateway to unmanaged namespace"),
            D::ApiServer => allow("gateway to API server"),
            D::Dns => allow("gateway to DNS"),
            D::Postgres => refuse("gateway to PostgreSQL"),
            D::Outside => refuse("gateway to outside the cluster"),
        },
        Source::Outsider => match destination {
            D::StackService(_) | D::StackPod(_) => refuse("unmanaged namespace to stack"),
            D::Outsider => allow("unmanaged namespace to itself"),
            D::ApiServer | D::Dns | D::Postgres | D::Outside => allow("unmanaged namespace egress"),
        },
    }
}

/// One measured cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Where the connection started.
    pub source: Source,
    /// Where it went.
    pub destination: Destination,
    /// The address probed (`host:port`).
    pub target: String,
    /// What the contract says.
    pub expected: Expectation,
    /// What happened.
    pub observed: Verdict,
    /// The probe's own words (its result and detail).
    pub detail: String,
}

impl Cell {
    /// Whether what happened is what the contract says.
    pub fn matches(&self) -> bool {
        self.expected.verdict == self.observed
    }
}

/// The whole matrix of one run.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// The stacks, indexed by [`Source::Stack`] and the stack destinations.
    pub stacks: Vec<Stack>,
    /// Every cell measured.
    pub cells: Vec<Cell>,
}

/// The counts printed under the grid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Cells measured.
    pub cells: usize,
    /// Allowed, as the contract says.
    pub allowed_as_expected: usize,
    /// Refused, as the contract says, next to an allowed cell of the same source.
    pub refused_as_expected: usize,
    /// Refused as the contract says, but the source reached nothing at all in this run.
    pub unproven: usize,
    /// Not what the contract says.
    pub differing: usize,
}

impl Counts {
    /// Whether the run shows the contract holding.
    pub fn passed(&self) -> bool {
        self.cells > 0 && self.differing == 0 && self.unproven == 0
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cells: {} · allowed as expected: {} · refused as expected: {} · unproven refusals: {} · differing: {}",
            self.cells, self.allowed_as_expected, self.refused_as_expected, self.unproven, self.differing
        )
    }
}

impl Matrix {
    /// The sources in grid order: every stack, the gateway, the outsider.
    pub fn sources(&self) -> Vec<Source> {
        (0..self.stacks.len())
            .map(Source::Stack)
            .chain([Source::Gateway, Source::Outsider])
            .collect()
    }

    /// The destinations in grid order.
    pub fn destinations(&self) -> Vec<Destination> {
        let n = self.stacks.len();
        (0..n)
            .map(Destination::StackService)
            .chain((0..n).map(Destination::StackPod))
            .chain([
                Destination::Outsider,
                Destination::ApiServer,
                Destination::Dns,
                Destination::Postgres,
                Destination::Outside,
            ])
            .collect()
    }

    /// Sources that reached something in this run.
    fn sources_with_an_allowed_cell(&self) -> Vec<Source> {
        let mut out: Vec<Source> = self
            .cells
            .iter()
            .filter(|c| c.observed == Verdict::Allowed)
            .map(|c| c.source)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether a refusal of this cell is proven by an allowed cell of the same source.
    pub fn proven(&self, cell: &Cell) -> bool {
        cell.observed == Verdict::Allowed || self.sources_with_an_allowed_cell().contains(&cell.source)
    }

    /// The counts.
    pub fn counts(&self) -> Counts {
        let reached = self.sources_with_an_allowed_cell();
        let mut counts = Counts {
            cells: self.cells.len(),
            ..Counts::default()
        };
        for cell in &self.cells {
            match (cell.matches(), cell.observed) {
                (false, _) => counts.differing += 1,
                (true, Verdict::Allowed) => counts.allowed_as_expected += 1,
                (true, Verdict::Refused) if reached.contains(&cell.source) => counts.refused_as_expected += 1,
                (true, Verdict::Refused) => counts.unproven += 1,
            }
        }
        counts
    }

    /// Counts per class of cell: (class, expected verdict) → (as expected, differing).
    pub fn by_class(&self) -> BTreeMap<(&'static str, Verdict), (usize, usize)> {
        let mut out: BTreeMap<(&'static str, Verdict), (usize, usize)> = BTreeMap::new();
        for cell in &self.cells {
            let entry = out
                .entry((cell.expected.class, cell.expected.verdict))
                .or_default();
            if cell.matches() {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        out
    }

    /// The grid's label of a source.
    pub fn source_label(&self, source: Source) -> String {
        match source {
            Source::Stack(i) => self.stacks.get(i).map(|s| s.label.clone()).unwrap_or_default(),
            Source::Gateway => "gateway".into(),
            Source::Outsider => "outsider".into(),
        }
    }

    /// The grid's label of a destination.
    pub fn destination_label(&self, destination: Destination) -> String {
        let stack = |i: usize| self.stacks.get(i).map(|s| s.label.clone()).unwrap_or_default();
        match destination {
            Destination::StackService(i) => format!("{}:svc", stack(i)),
            Destination::StackPod(i) => format!("{}:pod", stack(i)),
            Destination::Outsider => "outsider".into(),
            Destination::ApiServer => "api".into(),
            Destination::Dns => "dns".into(),
            Destination::Postgres => "postgres".into(),
            Destination::Outside => "outside".into(),
        }
    }

    /// The grid: one row per source, one column per destination. `A`/`r`: allowed/refused as the contract says;
    /// `A!`/`r!`: allowed/refused where the contract says the opposite; `r?`: refused as expected but unproven;
    /// `-`: not measured.
    pub fn render(&self) -> String {
        let reached = self.sources_with_an_allowed_cell();
        let destinations = self.destinations();
        let sources = self.sources();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["from \\ to".to_owned()];
        header.extend(destinations.iter().map(|d| self.destination_label(*d)));
        rows.push(header);
        for source in &sources {
            let mut row = vec![self.source_label(*source)];
            for destination in &destinations {
                let cell = self
                    .cells
                    .iter()
                    .find(|c| c.source == *source && c.destination == *destination);
                row.push(match cell {
                    None => "-".into(),
                    Some(c) => {
                        let mark = match c.observed {
                            Verdict::Allowed => "A",
                            Verdict::Refused => "r",
                        };
                        if !c.matches() {
                            format!("{mark}!")
                        } else if c.observed == Verdict::Refused && !reached.contains(&c.source) {
                            format!("{mark}?")
                        } else {
                            mark.to_owned()
                        }
                    }
                });
            }
            rows.push(row);
        }
        let columns = rows.first().map(Vec::len).unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str(
            "A = allowed, r = refused, as the contract says · A! / r! = the opposite of what it says · \
             r? = refused, but the source reached nothing in this run\n",
        );
        out.push_str(&format!("{}\n", self.counts()));
        out
    }

    /// One line per differing or unproven cell, with the probe's words.
    pub fn failures(&self) -> Vec<String> {
        let reached = self.sources_with_an_allowed_cell();
        self.cells
            .iter()
            .filter(|c| !c.matches() || (c.observed == Verdict::Refused && !reached.contains(&c.source)))
            .map(|c| {
                format!(
                    "{} → {} ({}): {} where the contract says {} [{}]: {}",
                    self.source_label(c.source),
                    self.destination_label(c.destination),
                    c.target,
                    c.observed,
                    c.expected.verdict,
                    c.expected.class,
                    c.detail
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stacks() -> Vec<Stack> {
        let stack = |label: &str, tenant: &str, customer: Option<&str>, ns: &str| Stack {
            label: label.into(),
            tenant: tenant.into(),
            customer: customer.map(Into::into),
            namespace: ns.into(),
            database: true,
        };
        vec![
            stack("a", "a", None, "bk-a"),
            stack("a1", "a", Some("one"), "bk-a-one"),
            stack("b", "b", None, "bk-b"),
        ]
    }

    #[test]
    fn the_contract_per_cell() {
        let s = stacks();
        let e = |src, dst| expect(&s, src, dst).verdict;
        assert_eq!(e(Source::Stack(0), Destination::StackPod(0)), Verdict::Allowed);
        assert_eq!(
            e(Source::Stack(0), Destination::StackService(2)),
            Verdict::Refused
        );
        assert_eq!(
            expect(&s, Source::Stack(0), Destination::StackPod(2)).class,
            "tenant to other tenant"
        );
        assert_eq!(
            expect(&s, Source::Stack(1), Destination::StackPod(0)).class,
            "customer boundary"
        );
        assert_eq!(e(Source::Stack(1), Destination::StackPod(0)), Verdict::Refused);
        assert_eq!(e(Source::Stack(0), Destination::ApiServer), Verdict::Refused);
        assert_eq!(e(Source::Stack(0), Destination::Dns), Verdict::Allowed);
        assert_eq!(e(Source::Stack(0), Destination::Postgres), Verdict::Allowed);
        assert_eq!(e(Source::Stack(0), Destination::Outside), Verdict::Refused);
        assert_eq!(e(Source::Stack(0), Destination::Outsider), Verdict::Refused);
        assert_eq!(e(Source::Gateway, Destination::StackService(2)), Verdict::Allowed);
        assert_eq!(e(Source::Gateway, Destination::Postgres), Verdict::Refused);
        assert_eq!(e(Source::Gateway, Destination::ApiServer), Verdict::Allowed);
        assert_eq!(e(Source::Outsider, Destination::StackPod(1)), Verdict::Refused);
        assert_eq!(e(Source::Outsider, Destination::Outside), Verdict::Allowed);
        let mut no_db = s.clone();
        no_db[0].database = false;
        assert_eq!(
            expect(&no_db, Source::Stack(0), Destination::Postgres).verdict,
            Verdict::Refused
        );
    }

    fn cell(m: &Matrix, source: Source, destination: Destination, observed: Verdict) -> Cell {
        Cell {
            source,
            destination,
            target: "x:1".into(),
            expected: expect(&m.stacks, source, destination),
            observed,
            detail: String::new(),
        }
    }

    #[test]
    fn counts_differing_and_unproven_cells() {
        let mut m = Matrix {
            stacks: stacks(),
            cells: Vec::new(),
        };
        m.cells.push(cell(
            &m,
            Source::Stack(0),
            Destination::StackPod(0),
            Verdict::Allowed,
        ));
        m.cells.push(cell(
            &m,
            Source::Stack(0),
            Destination::StackPod(2),
            Verdict::Refused,
        ));
        assert_eq!(
            m.counts(),
            Counts {
                cells: 2,
                allowed_as_expected: 1,
                refused_as_expected: 1,
                unproven: 0,
                differing: 0
            }
        );
        assert!(m.counts().passed());

        // A source that reached nothing: its refusals prove nothing.
        m.cells.push(cell(
            &m,
            Source::Stack(1),
            Destination::StackPod(2),
            Verdict::Refused,
        ));
        assert_eq!(m.counts().unproven, 1);
        assert!(!m.counts().passed());
        assert!(m.render().contains("r?"));

        // A cross-tenant connection that went through.
        m.cells.push(cell(
            &m,
            Source::Stack(2),
            Destination::StackPod(0),
            Verdict::Allowed,
        ));
        let counts = m.counts();
        assert_eq!(counts.differing, 1);
        assert!(!counts.passed());
        let failures = m.failures();
        assert_eq!(failures.len(), 2);
        assert!(
            failures
                .iter()
                .any(|f| f.contains("b → a:pod") && f.contains("tenant to other tenant"))
        );
        assert!(m.render().contains("A!"));
        // a → b and a1 → b as the contract says; b → a not.
        assert_eq!(
            m.by_class()[&("tenant to other tenant", Verdict::Refused)],
            (2, 1)
        );
    }

    #[test]
    fn an_empty_run_does_not_pass() {
        assert!(!Matrix::default().counts().passed());
    }

    #[test]
    fn the_grid_has_a_row_per_source_and_a_column_per_destination() {
        let m = Matrix {
            stacks: stacks(),
            cells: Vec::new(),
        };
        let grid = m.render();
        let lines: Vec<&str> = grid.lines().collect();
        // Header, three stacks, gateway, outsider, legend, counts.
        assert_eq!(lines.len(), 8);
        assert!(
            lines[0].starts_with("from \\ to")
                && lines[0].contains("a1:svc")
                && lines[0].ends_with("outside")
        );
        assert!(lines[4].starts_with("gateway"));
        assert_eq!(m.destinations().len(), 3 * 2 + 5);
    }
}
