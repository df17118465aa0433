//! Pure checks across resources: who holds an org id, and whether a Customer's quota fits its Tenant's.

use bulkhead_crds::quantity;
use bulkhead_crds::v1alpha1::QuotaSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pipeline::build::quota_values;

/// One resource claiming an org id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    /// `Tenant` or `Customer`.
    pub kind: &'static str,
    /// Its name.
    pub name: &'a str,
    /// The org id it claims.
    pub org: &'a str,
    /// When it was created.
    pub created: Option<&'a Time>,
}

impl Claim<'_> {
    fn key(&self) -> (Option<i64>, &'static str, &str) {
        (self.created.map(|t| t.0.as_second()), self.kind, self.name)
    }

    /// `Tenant/acme`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The claim that holds `me.org`: the oldest claim (by creation time, then kind, then name). Returns the holder
/// when it is not `me`.
pub fn org_holder<'a>(me: &Claim<'_>, claims: &'a [Claim<'a>]) -> Option<&'a Claim<'a>> {
    let holder = claims
        .iter()
        .filter(|c| c.org == me.org)
        .min_by(|a, b| a.key().cmp(&b.key()))?;
    (holder.kind != me.kind || holder.name != me.name).then_some(holder)
}

/// Checks that `mine` fits in what `tenant` leaves after `siblings` (the Tenant's other, older Customers).
/// Returns a sentence naming each resource that does not fit.
pub fn quota_fits(tenant: &QuotaSpec, siblings: &[&QuotaSpec], mine: &QuotaSpec) -> Result<(), String> {
    let values = |q: &QuotaSpec| {
        let (cpu, memory, pods) = quota_values(q);
        (
            quantity::parse_milli(&cpu).unwrap_or(i128::MAX),
            quantity::parse_milli(&memory).unwrap_or(i128::MAX),
            i128::from(pods) * 1000,
        )
    };
    let total = values(tenant);
    let used = siblings
        .iter()
        .map(|q| values(q))
        .fold((0i128, 0i128, 0i128), |acc, v| {
            (
                acc.0.saturating_add(v.0),
                acc.1.saturating_add(v.1),
                acc.2.saturating_add(v.2),
            )
        });
    let want = values(mine);
    let mut problems = Vec::new();
    for (what, total, used, want) in [
        ("cpu", total.0, used.0, want.0),
        ("memory", total.1, used.1, want.1),
        ("pods", total.2, used.2, want.2),
    ] {
        let left = total.saturating_sub(used).max(0);
        if want > left {
            problems.push(format!(
                "{what} {} exceeds the {} the Tenant has left",
                show(what, want),
                show(what, left)
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "The Customer's quota does not fit inside its Tenant's remaining quota: {}.",
            problems.join("; ")
        ))
    }
}

fn show(what: &str, milli: i128) -> String {
    match what {
        "cpu" if milli % 1000 == 0 => format!("{}", milli / 1000),
        "cpu" => format!("{milli}m"),
        "memory" => {
            let bytes = milli / 1000;
            if bytes % (1 << 30) == 0 {
                format!("{}Gi", bytes >> 30)
            } else if bytes % (1 << 20) == 0 {
                format!("{}Mi", bytes >> 20)
            } else {
                bytes.to_string()
            }
        }
        _ => format!("{}", milli / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn the_oldest_claim_holds_the_org() {
        let (t1, t2) = (at(100), at(200));
        let claims = [
            Claim {
                kind: "Tenant",
                name: "older",
                org: "org_x",
                created: Some(&t1),
            },
            Claim {
                kind: "Customer",
                name: "newer",
                org: "org_x",
                created: Some(&t2),
            },
            Claim {
                kind: "Tenant",
                name: "other",
                org: "org_y",
                created: Some(&t1),
            },
        ];
        assert_eq!(org_holder(&claims[0], &claims), None);
        assert_eq!(
            org_holder(&claims[1], &claims).map(Claim::describe),
            Some("Tenant/older".into())
        );
        assert_eq!(org_holder(&claims[2], &claims), None);
    }

    #[test]
    fn same_second_ties_break_by_kind_then_name() {
        let t = at(100);
        let claims = [
            Claim {
                kind: "Tenant",
                name: "b",
                org: "o",
                created: Some(&t),
            },
            Claim {
                kind: "Tenant",
                name: "a",
                org: "o",
                created: Some(&t),
            },
        ];
        assert_eq!(org_holder(&claims[0], &claims).map(|c| c.name), Some("a"));
        assert_eq!(org_holder(&claims[1], &claims), None);
    }

    fn quota(cpu: &str, memory: &str, pods: i32) -> QuotaSpec {
        QuotaSpec {
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
            pods: Some(pods),
        }
    }

    #[test]
    fn customers_fit_until_the_tenant_budget_is_used() {
        let tenant = quota("4", "8Gi", 20);
        let first = quota("2", "4Gi", 10);
        assert_eq!(quota_fits(&tenant, &[], &first), Ok(()));
        assert_eq!(quota_fits(&tenant, &[&first], &quota("2", "4Gi", 10)), Ok(()));
        let err = quota_fits(&tenant, &[&first, &first], &quota("500m", "1Gi", 1)).unwrap_err();
        assert!(
            err.contains("cpu 500m exceeds the 0 the Tenant has left"),
            "{err}"
        );
        assert!(
            err.contains("memory 1Gi exceeds the 0Gi the Tenant has left"),
            "{err}"
        );
        assert!(err.contains("pods 1 exceeds the 0 the Tenant has left"), "{err}");
    }

    #[test]
    fn defaults_apply_to_unset_quota_fields() {
        // Default Customer quota (2 CPU, 4Gi, 20 pods) does not fit a 1-CPU Tenant.
        let err = quota_fits(&quota("1", "8Gi", 50), &[], &QuotaSpec::default()).unwrap_err();
        assert!(err.contains("cpu 2 exceeds the 1 the Tenant has left"), "{err}");
        assert!(!err.contains("memory"), "{err}");
    }
}
