//! One check of `verify`: what was checked, about which subject, the verdict and the evidence behind it.

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The contract holds here.
    Pass,
    /// Worth a look, but the contract still holds (an unroutable resource, a hardening step the admin role
    /// could not take).
    Warn,
    /// The contract is broken here.
    Fail,
}

impl Verdict {
    /// The verdict as the report prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Check {
    /// The kind of check, a fixed dotted name (`network.cell`, `routing.duplicate_org`,
    /// `contract.network_policy`, `postgres.cross_grant`, …); the JSON schema lists them all.
    pub id: &'static str,
    /// What it is about: a namespace, an org, a role, a pair of them (`bk-a -> bk-b`).
    pub subject: String,
    /// Pass, warn or fail.
    pub verdict: Verdict,
    /// One sentence a reviewer can read: what was found.
    pub summary: String,
    /// The facts behind the verdict (policy names, grants, object fields), as JSON.
    pub evidence: serde_json::Value,
}

impl Check {
    /// A check with its verdict and evidence.
    pub fn new(
        id: &'static str,
        subject: impl Into<String>,
        verdict: Verdict,
        summary: impl Into<String>,
        evidence: serde_json::Value,
    ) -> Check {
        Check {
            id,
            subject: subject.into(),
            verdict,
            summary: summary.into(),
            evidence,
        }
    }

    /// A passing check.
    pub fn pass(id: &'static str, subject: impl Into<String>, summary: impl Into<String>) -> Check {
        Check::new(id, subject, Verdict::Pass, summary, serde_json::Value::Null)
    }

    /// A failing check.
    pub fn fail(
        id: &'static str,
        subject: impl Into<String>,
        summary: impl Into<String>,
        evidence: serde_json::Value,
    ) -> Check {
        Check::new(id, subject, Verdict::Fail, summary, evidence)
    }
}
