//! The status table the sandbox prints: one row per Tenant and Customer.

use bulkhead_crds::v1alpha1::{Customer, ResourceStatus, Tenant};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::HarnessError;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `Tenant` or `Customer`.
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// The Customer's Tenant (empty for Tenants).
    pub tenant: String,
    /// The org id.
    pub org: String,
    /// `status.namespace`, or empty.
    pub namespace: String,
    /// The DatabaseReady condition's reason, or empty (no database).
    pub database: String,
    /// The Ready condition's status, or empty.
    pub ready: String,
    /// The Ready condition's reason, or empty.
    pub reason: String,
    /// Whether the status describes the current generation.
    pub observed: bool,
}

impl Row {
    /// Observed by the operator and not merely waiting for its Tenant to be provisioned.
    pub fn settled(&self) -> bool {
        self.observed && self.reason != "TenantNotReady"
    }
}

fn row(
    kind: &'static str,
    name: String,
    tenant: String,
    org: String,
    generation: Option<i64>,
    status: Option<&ResourceStatus>,
) -> Row {
    let find = |type_: &str| status.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let ready = find("Ready");
    Row {
        kind,
        name,
        tenant,
        org,
        namespace: status.and_then(|s| s.namespace.clone()).unwrap_or_default(),
        database: find("DatabaseReady")
            .map(|c| c.reason.clone())
            .unwrap_or_default(),
        ready: ready.map(|c| c.status.clone()).unwrap_or_default(),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        observed: status
            .is_some_and(|s| s.observed_generation.is_some() && s.observed_generation == generation),
    }
}

/// Reads every Tenant and Customer.
pub async fn rows(client: &Client) -> Result<Vec<Row>, HarnessError> {
    let list = |what: &str| {
        let what = what.to_owned();
        move |source| HarnessError::Api { what, source }
    };
    let tenants = Api::<Tenant>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(list("listing Tenants"))?;
    let customers = Api::<Customer>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(list("listing Customers"))?;
    let mut rows = Vec::new();
    for t in &tenants.items {
        rows.push(row(
            "Tenant",
            t.name_any(),
            String::new(),
            t.spec.org_id.clone(),
            t.metadata.generation,
            t.status.as_ref(),
        ));
    }
    for c in &customers.items {
        rows.push(row(
            "Customer",
            c.name_any(),
            c.spec.tenant_ref.clone(),
            c.spec.org_id.clone(),
            c.metadata.generation,
            c.status.as_ref(),
        ));
    }
    Ok(rows)
}

/// Renders rows as an aligned text table.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "KIND",
        "NAME",
        "TENANT",
        "ORG",
        "NAMESPACE",
        "DATABASE",
        "READY",
        "REASON",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.kind.to_owned(),
                r.name.clone(),
                or_dash(&r.tenant),
                r.org.clone(),
                or_dash(&r.namespace),
                or_dash(&r.database),
                or_dash(&r.ready),
                if r.observed {
                    or_dash(&r.reason)
                } else {
                    format!("{} (not yet observed)", or_dash(&r.reason))
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cols: Vec<&str>| {
        let mut out = String::new();
        for (i, (col, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                out.push_str(col);
            } else {
                out.push_str(&format!("{col:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aligned_columns_and_marks_unobserved_rows() {
        let rows = vec![
            Row {
                kind: "Tenant",
                name: "acme".into(),
                tenant: String::new(),
                org: "org_acme".into(),
                namespace: String::new(),
                database: "Provisioned".into(),
                ready: "False".into(),
                reason: "StackNotReady".into(),
                observed: true,
            },
            Row {
                kind: "Customer",
                name: "acme-dental".into(),
                tenant: "acme".into(),
                org: "org_d".into(),
                namespace: String::new(),
                database: String::new(),
                ready: String::new(),
                reason: String::new(),
                observed: false,
            },
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "KIND      NAME         TENANT  ORG       NAMESPACE  DATABASE     READY  REASON"
        );
        assert_eq!(
            lines[1],
            "Tenant    acme         -       org_acme  -          Provisioned  False  StackNotReady"
        );
        assert_eq!(
            lines[2],
            "Customer  acme-dental  acme    org_d     -          -            -      - (not yet observed)"
        );
    }
}
