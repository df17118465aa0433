//! Checks chained audit logs (see [the chain](super#the-chain)): reads one log, or a rotated set oldest first,
//! follows every instance's chain on its own and reports the first line that breaks one — a deleted, altered,
//! reordered or duplicated line, a cut-off last line, a chain whose start is missing — with its file, line
//! number and `seq`. A chain that ends without its shutdown checkpoint is reported apart: its tail may have
//! been cut off, or its gateway is still running or was killed.
//!
//! What a line's own chain cannot show: the last line of a chain has no successor whose `prev` covers it, so
//! only its fields' consistency is checked; and a chain removed whole, or rewritten from some line on with
//! every later hash recomputed, leaves no trace in the log itself. A second copy shipped off the node as
//! lines are written (the cluster's log pipeline) is what those are checked against.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CheckpointKind, GENESIS, hex_digest, line_digest};

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be opened or read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file (`-` for standard input).
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A line of the input: the file as given and the line number in it (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The file as given (`-` for standard input).
    pub file: PathBuf,
    /// The line number, from 1.
    pub line: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// `seq n`, or `seq n to m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    /// The first.
    pub first: u64,
    /// The last (inclusive).
    pub last: u64,
}

impl std::fmt::Display for SeqRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "seq {}", self.first)
        } else {
            write!(f, "seq {} to {}", self.first, self.last)
        }
    }
}

/// The first line that breaks a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// The input holds no line at all.
    #[error("no audit line in the input: the log is empty or was removed")]
    Empty,
    /// The last line of a file has no newline: the file was cut off mid-line.
    #[error("{at}: partial line (no newline at the end of the file): the log is truncated here")]
    PartialLine {
        /// The partial line.
        at: Position,
    },
    /// A line that is not a chained audit line.
    #[error("{at}: not a chained audit line ({why}): altered, or a foreign line")]
    Malformed {
        /// The line.
        at: Position,
        /// What is wrong with it.
        why: String,
    },
    /// A chain's first line in the input is not its line 0.
    #[error(
        "{at}: chain {instance} first appears with seq {seq}: {missing} missing (deleted, or an earlier file of the set is not given)",
        missing = SeqRange { first: 0, last: seq.saturating_sub(1) }
    )]
    StartMissing {
        /// The chain.
        instance: String,
        /// The first `seq` seen.
        seq: u64,
        /// Its line.
        at: Position,
    },
    /// Line 0 of a chain is not a start checkpoint with the genesis `prev`.
    #[error("{at}: seq 0 of chain {instance} is not a start checkpoint with prev {GENESIS}: altered")]
    BadStart {
        /// The chain.
        instance: String,
        /// The line.
        at: Position,
    },
    /// A line's SHA-256 is not the next line's `prev`.
    #[error(
        "{at}: seq {seq} of chain {instance} was altered: its SHA-256 is not the prev of seq {next} at {next_at}",
        next = seq + 1
    )]
    Altered {
        /// The chain.
        instance: String,
        /// The altered line's `seq`.
        seq: u64,
        /// The altered line.
        at: Position,
        /// The line whose `prev` does not match.
        next_at: Position,
    },
    /// A line that follows the chain's previous line by its `prev` but claims another `seq`.
    #[error(
        "{at}: seq {expected} of chain {instance} was altered: it follows seq {previous} by its prev but claims seq {claimed}",
        previous = expected - 1
    )]
    SeqAltered {
        /// The chain.
        instance: String,
        /// The `seq` the line has by its place.
        expected: u64,
        /// The `seq` it claims.
        claimed: u64,
        /// The line.
        at: Position,
    },
    /// Lines missing from a chain, and found nowhere later in the input.
    #[error(
        "{at}: {missing} of chain {instance} deleted: the chain goes from seq {before} at {after} to seq {found} here{hint}",
        before = missing.first.saturating_sub(1),
        found = missing.last + 1,
        hint = if after.file == at.file { "" } else { " (the chain's first line in this file: a file of the set may be missing)" }
    )]
    Deleted {
        /// The chain.
        instance: String,
        /// The missing lines.
        missing: SeqRange,
        /// The chain's line before the gap.
        after: Position,
        /// The chain's line after the gap (where the first missing line belonged).
        at: Position,
    },
    /// A chain's line found further on: a later one stands where it belongs.
    #[error(
        "{at}: chain {instance} has seq {found} where seq {expected} belongs; seq {expected} is at {moved_to}: reordered"
    )]
    Reordered {
        /// The chain.
        instance: String,
        /// The `seq` that belongs at `at`.
        expected: u64,
        /// The `seq` found at `at`.
        found: u64,
        /// Where `expected` belongs.
        at: Position,
        /// Where `expected` is.
        moved_to: Position,
    },
    /// A `seq` the chain has already passed.
    #[error("{at}: seq {seq} of chain {instance} comes after seq {previous} at {after}: duplicated or moved")]
    OutOfOrder {
        /// The chain.
        instance: String,
        /// The `seq` found.
        seq: u64,
        /// The chain's `seq` before it.
        previous: u64,
        /// The line.
        at: Position,
        /// The chain's line before it.
        after: Position,
    },
    /// A checkpoint's `records` differs from the lines the chain holds.
    #[error(
        "{at}: checkpoint seq {seq} of chain {instance} counts {claimed} records, the chain holds {counted}: altered"
    )]
    CountMismatch {
        /// The chain.
        instance: String,
        /// The checkpoint's `seq`.
        seq: u64,
        /// Its `records`.
        claimed: u64,
        /// The chain's lines before it that are not checkpoints.
        counted: u64,
        /// The checkpoint.
        at: Position,
    },
}

/// What the input holds of one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The chain's `instance`.
    pub instance: String,
    /// Its line 0.
    pub first: Position,
    /// Its last line.
    pub last: Position,
    /// The last line's `seq`.
    pub last_seq: u64,
    /// Its lines that are not checkpoints.
    pub records: u64,
    /// Whether its last line is its shutdown checkpoint.
    pub closed: bool,
    /// Its last checkpoint: `seq`, `time` and line.
    pub last_checkpoint: Option<(u64, String, Position)>,
}

impl std::fmt::Display for ChainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.closed {
            return write!(
                f,
                "chain {}: seq 0 to {}, {} records, {} to {}, ends with its shutdown checkpoint",
                self.instance, self.last_seq, self.records, self.first, self.last
            );
        }
        write!(
            f,
            "chain {} ends at seq {} ({}) without a shutdown checkpoint: truncated after it, or the gateway is still running or was killed",
            self.instance, self.last_seq, self.last
        )?;
        if let Some((seq, time, at)) = &self.last_checkpoint {
            write!(f, "; last checkpoint seq {seq} at {time} ({at})")?;
        }
        Ok(())
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every chain seen, in order of first appearance (up to the finding, if any).
    pub chains: Vec<ChainSummary>,
    /// The first line that breaks a chain.
    pub finding: Option<Finding>,
}

impl Report {
    /// Chains without their shutdown checkpoint.
    pub fn open(&self) -> impl Iterator<Item = &ChainSummary> {
        self.chains.iter().filter(|c| !c.closed)
    }

    /// Lines checked.
    pub fn lines(&self) -> u64 {
        self.chains.iter().map(|c| c.last_seq + 1).sum()
    }
}

/// The fields every chained line has.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    instance: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    event: Cow<'a, str>,
}

/// A checkpoint's own fields.
#[derive(Deserialize)]
struct CheckpointHead {
    kind: CheckpointKind,
    time: String,
    records: u64,
}

/// A line's place while reading: file index and line number.
type At = (usize, u64);

struct Chain {
    instance: String,
    first: At,
    last: At,
    next_seq: u64,
    last_digest: [u8; 32],
    records: u64,
    closed: bool,
    last_checkpoint: Option<(u64, String, At)>,
}

/// A gap in a chain, held while the rest of the input is searched for the missing lines.
struct Gap {
    chain: usize,
    expected: u64,
    found: u64,
    after: At,
    at: At,
}

struct Checker<'p> {
    files: &'p [PathBuf],
    chains: Vec<Chain>,
    index: HashMap<String, usize>,
    gap: Option<Gap>,
    finding: Option<Finding>,
}

impl Checker<'_> {
    fn position(&self, (file, line): At) -> Position {
        Position {
            file: self.files.get(file).cloned().unwrap_or_default(),
            line,
        }
    }

    /// Takes one line (without its newline); false once the check is decided.
    fn line(&mut self, bytes: &[u8], complete: bool, at: At) -> bool {
        if let Some(gap) = &self.gap {
            // Searching for the missing lines: are they further on (reordered) or gone (deleted)?
            let Ok(head) = serde_json::from_slice::<Head<'_>>(bytes) else {
                return true;
            };
            let chain = &self.chains[gap.chain];
            if head.instance == chain.instance && head.seq == gap.expected {
                self.finding = Some(Finding::Reordered {
                    instance: chain.instance.clone(),
                    expected: gap.expected,
                    found: gap.found,
                    at: self.position(gap.at),
                    moved_to: self.position(at),
                });
                return false;
            }
            return true;
        }
        match self.check(bytes, complete, at) {
            Ok(()) | Err(None) => true,
            Err(Some(finding)) => {
                self.finding = Some(finding);
                false
            }
        }
    }

    /// Checks one line; `Err(None)` starts the search for a gap's lines.
    fn check(&mut self, bytes: &[u8], complete: bool, at: At) -> Result<(), Option<Finding>> {
        if !complete {
            return Err(Some(Finding::PartialLine {
                at: self.position(at),
            }));
        }
        let malformed = |why: String| {
            Some(Finding::Malformed {
                at: self.position(at),
                why,
            })
        };
        let head: Head<'_> = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if head.prev.len() != 64
            || !head
                .prev
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(malformed("prev is not 64 lowercase hex digits".into()));
        }
        let checkpoint = if head.event == "checkpoint" {
            Some(
                serde_json::from_slice::<CheckpointHead>(bytes)
                    .map_err(|e| malformed(format!("checkpoint: {e}")))?,
            )
        } else {
            None
        };
        let digest = line_digest(bytes);
        let index = match self.index.get(head.instance.as_ref()) {
            Some(&index) => index,
            None => {
                let instance = head.instance.clone().into_owned();
                if head.seq != 0 {
                    return Err(Some(Finding::StartMissing {
                        instance,
                        seq: head.seq,
                        at: self.position(at),
                    }));
                }
                let starts = checkpoint
                    .as_ref()
                    .is_some_and(|c| c.kind == CheckpointKind::Start);
                if head.prev != GENESIS || !starts {
                    return Err(Some(Finding::BadStart {
                        instance,
                        at: self.position(at),
                    }));
                }
                self.index.insert(instance.clone(), self.chains.len());
                self.chains.push(Chain {
                    instance,
                    first: at,
                    last: at,
                    next_seq: 0,
                    last_digest: [0; 32],
                    records: 0,
                    closed: false,
                    last_checkpoint: None,
                });
                self.chains.len() - 1
            }
        };
        let chain = &self.chains[index];
        let linked = head.prev.as_bytes() == hex_digest(&chain.last_digest).as_slice();
        if head.seq > chain.next_seq && head.seq > 0 && chain.next_seq > 0 && linked {
            return Err(Some(Finding::SeqAltered {
                instance: chain.instance.clone(),
                expected: chain.next_seq,
                claimed: head.seq,
                at: self.position(at),
            }));
        }
        if head.seq > chain.next_seq {
            self.gap = Some(Gap {
                chain: index,
                expected: chain.next_seq,
                found: head.seq,
                after: chain.last,
                at,
            });
            return Err(None);
        }
        if head.seq < chain.next_seq {
            return Err(Some(Finding::OutOfOrder {
                instance: chain.instance.clone(),
                seq: head.seq,
                previous: chain.next_seq - 1,
                at: self.position(at),
                after: self.position(chain.last),
            }));
        }
        if head.seq > 0 && !linked {
            return Err(Some(Finding::Altered {
                instance: chain.instance.clone(),
                seq: head.seq - 1,
                at: self.position(chain.last),
                next_at: self.position(at),
            }));
        }
        if let Some(c) = &checkpoint {
            if c.records != chain.records {
                return Err(Some(Finding::CountMismatch {
                    instance: chain.instance.clone(),
                    seq: head.seq,
                    claimed: c.records,
                    counted: chain.records,
                    at: self.position(at),
                }));
            }
            if c.kind == CheckpointKind::Start && head.seq != 0 {
                return Err(Some(Finding::Malformed {
                    at: self.position(at),
                    why: "a start checkpoint after seq 0".into(),
                }));
            }
        }
        let chain = &mut self.chains[index];
        chain.next_seq = head.seq + 1;
        chain.last = at;
        chain.last_digest = digest;
        chain.closed = checkpoint
            .as_ref()
            .is_some_and(|c| c.kind == CheckpointKind::Shutdown);
        match checkpoint {
            Some(c) => chain.last_checkpoint = Some((head.seq, c.time, at)),
            None => chain.records += 1,
        }
        Ok(())
    }

    fn finish(mut self) -> Report {
        if let Some(gap) = self.gap.take()
            && self.finding.is_none()
        {
            // The missing lines are nowhere further on.
            self.finding = Some(Finding::Deleted {
                instance: self.chains[gap.chain].instance.clone(),
                missing: SeqRange {
                    first: gap.expected,
                    last: gap.found - 1,
                },
                after: self.position(gap.after),
                at: self.position(gap.at),
            });
        }
        if self.finding.is_none() && self.chains.is_empty() {
            self.finding = Some(Finding::Empty);
        }
        let chains = self
            .chains
            .iter()
            .map(|c| ChainSummary {
                instance: c.instance.clone(),
                first: self.position(c.first),
                last: self.position(c.last),
                last_seq: c.next_seq.saturating_sub(1),
                records: c.records,
                closed: c.closed,
                last_checkpoint: c
                    .last_checkpoint
                    .as_ref()
                    .map(|(seq, time, at)| (*seq, time.clone(), self.position(*at))),
            })
            .collect();
        Report {
            chains,
            finding: self.finding,
        }
    }
}

/// Checks the logs in `files`, oldest first (`-` reads standard input).
pub fn verify(files: &[PathBuf]) -> Result<Report, VerifyError> {
    let mut checker = Checker {
        files,
        chains: Vec::new(),
        index: HashMap::new(),
        gap: None,
        finding: None,
    };
    let mut line = Vec::new();
    // A container runtime line split in parts (`P`), joined until its last part (`F`).
    let mut joined = Vec::new();
    'files: for (file, path) in files.iter().enumerate() {
        let read_error = |source| VerifyError::Read {
            path: path.clone(),
            source,
        };
        let mut reader = open(path).map_err(read_error)?;
        let mut number = 0;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(read_error)? == 0 {
                break;
            }
            number += 1;
            let complete = line.last() == Some(&b'\n');
            if complete {
                line.pop();
            }
            let at = (file, number);
            let go_on = match cri(&line) {
                Some(_) if !complete => checker.line(&line, false, at),
                Some(cri) if cri.stream == b"stderr" => true,
                Some(cri) => {
                    joined.extend_from_slice(cri.content);
                    if cri.last_part {
                        let go_on = checker.line(&joined, true, at);
                        joined.clear();
                        go_on
                    } else {
                        true
                    }
                }
                None => checker.line(&line, complete, at),
            };
            if !go_on {
                break 'files;
            }
        }
    }
    Ok(checker.finish())
}

/// A line of a container runtime log (`<time> <stream> <P|F> <content>`, the files the kubelet keeps under
/// `/var/log/pods`).
struct CriLine<'a> {
    stream: &'a [u8],
    /// `F`: the content ends a line; `P`: a part of a long line, continued on the next.
    last_part: bool,
    content: &'a [u8],
}

/// Reads `line` as a container runtime log line; none for a line that is one (an audit line starts with `{`).
fn cri(line: &[u8]) -> Option<CriLine<'_>> {
    if line.first() == Some(&b'{') {
        return None;
    }
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or_default();
    if !time.first().is_some_and(u8::is_ascii_digit) || !matches!(stream, b"stdout" | b"stderr") {
        return None;
    }
    let last_part = match tag.split(|b| *b == b':').next() {
        Some(b"F") => true,
        Some(b"P") => false,
        _ => return None,
    };
    Some(CriLine {
        stream,
        last_part,
        content,
    })
}

fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    Ok(Box::new(std::io::BufReader::with_capacity(
        256 * 1024,
        std::fs::File::open(path)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, AuditRecord, AuditSink as _, ChainConfig, StdoutAudit};
    use std::sync::{Arc, Mutex};

    /// An output the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(status: u16) -> AuditRecord<'static> {
        AuditRecord {
            time: "2026-11-26T07:00:00Z".parse().unwrap(),
            request_id: "r",
            decision: "allow",
            gate: "none",
            reason: "ok",
            issuer: None,
            kid: None,
            subject: Some("user_1"),
            org: Some("org_a"),
            tenant: Some("acme"),
            customer: None,
            impersonator: None,
            method: Some("GET"),
            path: Some("/x"),
            status,
            latency_ms: 0.25,
            token_sha256: Some([7; 32]),
        }
    }

    /// The lines of a closed chain named `instance` with `records` request lines (start checkpoint, the
    /// records, shutdown checkpoint).
    fn chain(instance: &str, records: u16) -> Vec<String> {
        let out = Shared::default();
        let sink = StdoutAudit::start_with(
            Box::new(out.clone()),
            ChainConfig {
                instance: instance.into(),
                checkpoint_every: Duration::from_secs(3600),
            },
        )
        .unwrap();
        for status in 0..records {
            sink.record(&AuditEvent::Request(record(200 + status)));
        }
        sink.close();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    use std::time::Duration;

    /// Writes each file's lines (with a newline after each) into a temp dir and checks them in order.
    fn check(files: &[&[String]]) -> (tempfile::TempDir, Vec<PathBuf>, Report) {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .map(|(i, lines)| {
                let path = dir.path().join(format!("audit.log.{i}"));
                let mut text = lines.join("\n");
                if !lines.is_empty() {
                    text.push('\n');
                }
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect();
        let report = verify(&paths).unwrap();
        (dir, paths, report)
    }

    fn at(path: &Path, line: u64) -> Position {
        Position {
            file: path.to_owned(),
            line,
        }
    }

    #[test]
    fn an_untouched_log_verifies() {
        let lines = chain("gw-0.a", 5);
        assert_eq!(lines.len(), 7);
        let (_dir, paths, report) = check(&[&lines]);
        assert_eq!(report.finding, None);
        assert_eq!(report.chains.len(), 1);
        let c = &report.chains[0];
        assert_eq!(
            (c.instance.as_str(), c.last_seq, c.records, c.closed),
            ("gw-0.a", 6, 5, true)
        );
        assert_eq!(
            (c.first.clone(), c.last.clone()),
            (at(&paths[0], 1), at(&paths[0], 7))
        );
        assert_eq!(report.open().count(), 0);
    }

    #[test]
    fn a_deleted_line_is_named_with_its_seq_and_place() {
        let mut lines = chain("gw-0.a", 5);
        lines.remove(3); // seq 3, line 4
        let (_dir, paths, report) = check(&[&lines]);
        let finding = report.finding.unwrap();
        assert_eq!(
            finding,
            Finding::Deleted {
                instance: "gw-0.a".into(),
                missing: SeqRange { first: 3, last: 3 },
                after: at(&paths[0], 3),
                at: at(&paths[0], 4),
            }
        );
        let message = finding.to_string();
        assert!(
            message.contains(&format!(
                "{}:4: seq 3 of chain gw-0.a deleted",
                paths[0].display()
            )),
            "{message}"
        );
    }

    #[test]
    fn several_deleted_lines_are_one_range() {
        let mut lines = chain("gw-0.a", 5);
        lines.drain(2..5); // seq 2, 3, 4
        let (_dir, _paths, report) = check(&[&lines]);
        let Some(Finding::Deleted { missing, .. }) = report.finding else {
            panic!("{:?}", report.finding);
        };
        assert_eq!(missing, SeqRange { first: 2, last: 4 });
        assert!(missing.to_string() == "seq 2 to 4");
    }

    #[test]
    fn an_edited_line_is_named_with_its_seq_and_place() {
        let mut lines = chain("gw-0.a", 5);
        lines[2] = lines[2].replace("\"allow\"", "\"deny\"");
        let (_dir, paths, report) = check(&[&lines]);
        let finding = report.finding.unwrap();
        assert_eq!(
            finding,
            Finding::Altered {
                instance: "gw-0.a".into(),
                seq: 2,
                at: at(&paths[0], 3),
                next_at: at(&paths[0], 4),
            }
        );
        assert!(
            finding
                .to_string()
                .contains(":3: seq 2 of chain gw-0.a was altered")
        );
    }

    #[test]
    fn an_edited_sequence_number_or_a_broken_line_is_named() {
        let mut lines = chain("gw-0.a", 3);
        lines[2] = lines[2].replace("\"seq\":2", "\"seq\":7");
        let (_dir, paths, report) = check(&[&lines]);
        assert_eq!(
            report.finding,
            Some(Finding::SeqAltered {
                instance: "gw-0.a".into(),
                expected: 2,
                claimed: 7,
                at: at(&paths[0], 3),
            })
        );
        let mut lines = chain("gw-0.a", 3);
        lines[1].truncate(40);
        let (_dir, paths, report) = check(&[&lines]);
        assert!(
            matches!(&report.finding, Some(Finding::Malformed { at: a, .. }) if *a == at(&paths[0], 2)),
            "{:?}",
            report.finding
        );
    }

    #[test]
    fn swapped_lines_are_reported_as_reordered() {
        let mut lines = chain("gw-0.a", 5);
        lines.swap(2, 3); // seq 2 and 3
        let (_dir, paths, report) = check(&[&lines]);
        let finding = report.finding.unwrap();
        assert_eq!(
            finding,
            Finding::Reordered {
                instance: "gw-0.a".into(),
                expected: 2,
                found: 3,
                at: at(&paths[0], 3),
                moved_to: at(&paths[0], 4),
            }
        );
        assert!(finding.to_string().contains("reordered"));
        // A line moved further down.
        let mut lines = chain("gw-0.a", 5);
        let moved = lines.remove(1);
        lines.insert(5, moved);
        let (_dir, paths, report) = check(&[&lines]);
        assert!(
            matches!(&report.finding, Some(Finding::Reordered { expected: 1, found: 2, moved_to, .. }) if *moved_to == at(&paths[0], 6)),
            "{:?}",
            report.finding
        );
    }

    #[test]
    fn a_duplicated_line_is_named() {
        let mut lines = chain("gw-0.a", 3);
        let copy = lines[2].clone();
        lines.insert(3, copy);
        let (_dir, paths, report) = check(&[&lines]);
        assert_eq!(
            report.finding,
            Some(Finding::OutOfOrder {
                instance: "gw-0.a".into(),
                seq: 2,
                previous: 2,
                at: at(&paths[0], 4),
                after: at(&paths[0], 3),
            })
        );
    }

    #[test]
    fn a_cut_off_tail_leaves_an_open_chain_and_a_cut_line_is_truncation() {
        let mut lines = chain("gw-0.a", 5);
        lines.truncate(4); // seq 0 to 3
        let (_dir, paths, report) = check(&[&lines]);
        assert_eq!(report.finding, None);
        let open: Vec<_> = report.open().collect();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].last_seq, open[0].last.clone()), (3, at(&paths[0], 4)));
        let message = open[0].to_string();
        assert!(
            message.contains("ends at seq 3") && message.contains("without a shutdown checkpoint"),
            "{message}"
        );
        assert!(message.contains("last checkpoint seq 0"), "{message}");

        // Cut mid-line: the last line has no newline.
        let lines = chain("gw-0.a", 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut text = lines[..4].join("\n");
        text.push('\n');
        text.push_str(&lines[4][..30]);
        std::fs::write(&path, text).unwrap();
        let report = verify(std::slice::from_ref(&path)).unwrap();
        assert_eq!(report.finding, Some(Finding::PartialLine { at: at(&path, 5) }));
    }

    #[test]
    fn a_rotated_set_verifies_in_order_and_a_missing_file_is_named() {
        let lines = chain("gw-0.a", 10);
        let (a, rest) = lines.split_at(4);
        let (b, c) = rest.split_at(4);
        let (_dir, _paths, report) = check(&[a, b, c]);
        assert_eq!(report.finding, None);
        assert_eq!((report.chains.len(), report.chains[0].closed), (1, true));

        let (_dir, paths, report) = check(&[a, c]);
        let finding = report.finding.unwrap();
        assert_eq!(
            finding,
            Finding::Deleted {
                instance: "gw-0.a".into(),
                missing: SeqRange { first: 4, last: 7 },
                after: at(&paths[0], 4),
                at: at(&paths[1], 1),
            }
        );
        assert!(
            finding.to_string().contains("a file of the set may be missing"),
            "{finding}"
        );

        // Files out of order.
        let (_dir, _paths, report) = check(&[a, c, b]);
        assert!(
            matches!(report.finding, Some(Finding::Reordered { .. })),
            "{:?}",
            report.finding
        );
        // The oldest file missing.
        let (_dir, paths, report) = check(&[b, c]);
        assert_eq!(
            report.finding,
            Some(Finding::StartMissing {
                instance: "gw-0.a".into(),
                seq: 4,
                at: at(&paths[0], 1),
            })
        );
    }

    #[test]
    fn interleaved_instances_verify_as_separate_chains() {
        let one = chain("gw-0.a", 4);
        let two = chain("gw-1.b", 6);
        let mut mixed = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < one.len() || j < two.len() {
            if i < one.len() {
                mixed.push(one[i].clone());
                i += 1;
            }
            for _ in 0..2 {
                if j < two.len() {
                    mixed.push(two[j].clone());
                    j += 1;
                }
            }
        }
        let (_dir, _paths, report) = check(&[&mixed]);
        assert_eq!(report.finding, None);
        let chains: Vec<_> = report
            .chains
            .iter()
            .map(|c| (c.instance.as_str(), c.last_seq, c.closed))
            .collect();
        assert_eq!(chains, vec![("gw-0.a", 5, true), ("gw-1.b", 7, true)]);

        // A line of the second chain removed: the finding names that chain.
        let victim = mixed
            .iter()
            .position(|l| l.contains("\"gw-1.b\",\"seq\":3,"))
            .unwrap();
        mixed.remove(victim);
        let (_dir, _paths, report) = check(&[&mixed]);
        assert!(
            matches!(&report.finding, Some(Finding::Deleted { instance, missing, .. }) if instance == "gw-1.b" && missing.first == 3),
            "{:?}",
            report.finding
        );
    }

    #[test]
    fn a_restart_is_a_new_chain_not_a_deletion() {
        let mut first = chain("gw-0.a", 3);
        first.pop(); // killed: no shutdown checkpoint
        let second = chain("gw-0.b", 2);
        let (_dir, _paths, report) = check(&[&first, &second]);
        assert_eq!(report.finding, None);
        let open: Vec<_> = report.open().map(|c| c.instance.as_str()).collect();
        assert_eq!(open, vec!["gw-0.a"]);
        assert!(report.chains[1].closed);
    }

    #[test]
    fn container_runtime_log_files_are_read_as_the_kubelet_keeps_them() {
        let lines = chain("gw-0.a", 4);
        let mut cri = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let time = format!("2026-12-02T04:11:5{i}.123456789Z");
            cri.push(format!("{time} stderr F {{\"message\":\"a log line\"}}"));
            if i == 2 {
                // A long line in two parts.
                let (head, tail) = line.split_at(50);
                cri.push(format!("{time} stdout P {head}"));
                cri.push(format!("{time} stdout F {tail}"));
            } else {
                cri.push(format!("{time} stdout F {line}"));
            }
        }
        let (_dir, _paths, report) = check(&[&cri]);
        assert_eq!(report.finding, None);
        assert_eq!((report.chains.len(), report.chains[0].closed), (1, true));

        // Seq 2 (split over file lines 6 and 7) edited: named by the line that ends it.
        let edited: Vec<String> = cri
            .iter()
            .map(|l| l.replacen("\"status\":201", "\"status\":403", 1))
            .collect();
        let (_dir, paths, report) = check(&[&edited]);
        assert_eq!(
            report.finding,
            Some(Finding::Altered {
                instance: "gw-0.a".into(),
                seq: 2,
                at: at(&paths[0], 7),
                next_at: at(&paths[0], 9),
            })
        );
    }

    #[test]
    fn a_forged_start_or_count_is_named() {
        let mut lines = chain("gw-0.a", 3);
        lines[4] = lines[4].replace("\"records\":3", "\"records\":2");
        let (_dir, paths, report) = check(&[&lines]);
        assert!(
            matches!(&report.finding, Some(Finding::CountMismatch { seq: 4, claimed: 2, counted: 3, at: a, .. }) if *a == at(&paths[0], 5)),
            "{:?}",
            report.finding
        );
        let mut lines = chain("gw-0.a", 3);
        lines.remove(0);
        let (_dir, _paths, report) = check(&[&lines]);
        assert!(matches!(
            report.finding,
            Some(Finding::StartMissing { seq: 1, .. })
        ));
        let (_dir, _paths, report) = check(&[&[]]);
        assert_eq!(report.finding, Some(Finding::Empty));
    }
}
