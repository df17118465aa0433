use super::*;
use crate::v1alpha1::{
    CustomerSpec, DatabaseIsolation, DatabaseSpec, DeletionPolicy, EgressPort, EgressRule, EnvVar,
    NetworkSpec, Protocol, Quantity, QuotaSpec, StackResources, StackSpec, TenantSpec,
};

fn stack() -> StackSpec {
    StackSpec {
        image: "registry.example.com/acme/portal:1.4.2".into(),
        port: 8080,
        replicas: 2,
        env: vec![EnvVar {
            name: "LOG_LEVEL".into(),
            value: Some("info".into()),
        }],
        resources: StackResources::default(),
    }
}

fn tenant_spec() -> TenantSpec {
    TenantSpec {
        org_id: "org_2aXkQ9".into(),
        display_name: Some("ACME IT Services".into()),
        stack: stack(),
        database: DatabaseSpec {
            enabled: true,
            isolation: DatabaseIsolation::Schema,
            connection_limit: Some(10),
        },
        quota: QuotaSpec {
            cpu: Some("4".into()),
            memory: Some("8Gi".into()),
            pods: Some(20),
        },
        network: NetworkSpec {
            allow_egress: vec![EgressRule {
                cidr: "203.0.113.0/24".into(),
                ports: vec![EgressPort {
                    port: 443,
                    protocol: Protocol::TCP,
                }],
            }],
        },
        deletion_policy: DeletionPolicy::Retain,
    }
}

fn customer_spec() -> CustomerSpec {
    CustomerSpec {
        tenant_ref: "acme".into(),
        org_id: "org_client1".into(),
        display_name: None,
        stack: None,
        database: DatabaseSpec::default(),
        quota: QuotaSpec::default(),
        deletion_policy: DeletionPolicy::Delete,
    }
}

/// Runs `f` on a valid Tenant spec and returns the refused fields.
fn tenant_fields(f: impl FnOnce(&mut TenantSpec)) -> Vec<String> {
    let mut spec = tenant_spec();
    f(&mut spec);
    match tenant("acme", &spec, None) {
        Ok(()) => vec![],
        Err(e) => e.0.into_iter().map(|e| e.field).collect(),
    }
}

#[test]
fn a_complete_valid_tenant_passes() {
    assert_eq!(tenant("acme", &tenant_spec(), None), Ok(()));
    let identity = tenant_identity(&tenant_spec());
    assert_eq!(tenant("acme", &tenant_spec(), Some(&identity)), Ok(()));
}

#[test]
fn a_valid_customer_passes() {
    assert_eq!(customer("client-1", &customer_spec(), None), Ok(()));
    let identity = customer_identity(&customer_spec());
    assert_eq!(customer("client-1", &customer_spec(), Some(&identity)), Ok(()));
}

#[test]
fn names_must_be_dns_labels() {
    for bad in ["", "ACME", "acme_it", "-acme", "acme-", "a.b", &"a".repeat(64)] {
        let err = tenant(bad, &tenant_spec(), None).unwrap_err();
        assert_eq!(err.fields(), vec!["metadata.name"], "{bad:?}");
        assert!(err.to_string().contains("must be a DNS label"), "{err}");
    }
    assert_eq!(tenant(&"a".repeat(63), &tenant_spec(), None), Ok(()));
}

#[test]
fn org_id_shape_is_enforced() {
    for bad in [
        "",
        " org",
        "org id",
        "org/1",
        "_org",
        "org\n",
        "ö",
        &"o".repeat(129),
    ] {
        assert_eq!(
            tenant_fields(|s| s.org_id = bad.into()),
            vec!["spec.orgId"],
            "{bad:?}"
        );
    }
    for good in ["org_2aXk", "a", "tenant-1.example:prod", &"o".repeat(128)] {
        assert_eq!(
            tenant_fields(|s| s.org_id = good.into()),
            Vec::<String>::new(),
            "{good:?}"
        );
    }
}

#[test]
fn hostile_values_are_shown_escaped_and_cut_short() {
    let err = tenant(
        "acme",
        &TenantSpec {
            org_id: format!("x\n{}", "y".repeat(500)),
            ..tenant_spec()
        },
        None,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("spec.orgId: \"x\\ny"), "{message}");
    assert!(message.len() < 300, "{message}");
}

#[test]
fn display_name_limits() {
    assert_eq!(
        tenant_fields(|s| s.display_name = Some("a".repeat(257))),
        vec!["spec.displayName"]
    );
    assert_eq!(
        tenant_fields(|s| s.display_name = Some("bad\u{7}".into())),
        vec!["spec.displayName"]
    );
    assert_eq!(
        tenant_fields(|s| s.display_name = Some("Zürich GmbH".into())),
        Vec::<String>::new()
    );
}

#[test]
fn stack_fields_are_checked() {
    assert_eq!(
        tenant_fields(|s| s.stack.image = "Bad Image".into()),
        vec!["spec.stack.image"]
    );
    assert_eq!(tenant_fields(|s| s.stack.port = 80), vec!["spec.stack.port"]);
    assert_eq!(tenant_fields(|s| s.stack.port = 65536), vec!["spec.stack.port"]);
    assert_eq!(tenant_fields(|s| s.stack.port = 1024), Vec::<String>::new());
    assert_eq!(
        tenant_fields(|s| s.stack.replicas = -1),
        vec!["spec.stack.replicas"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.replicas = 101),
        vec!["spec.stack.replicas"]
    );
    assert_eq!(tenant_fields(|s| s.stack.replicas = 0), Vec::<String>::new());
}

#[test]
fn port_message_says_why() {
    let err = tenant(
        "acme",
        &TenantSpec {
            stack: StackSpec { port: 80, ..stack() },
            ..tenant_spec()
        },
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.stack.port: 80 is out of range: must be 1024 to 65535"),
        "{err}"
    );
}

#[test]
fn env_names_are_checked_and_reserved_names_refused() {
    let env = |names: &[&str]| {
        names
            .iter()
            .map(|n| EnvVar {
                name: (*n).into(),
                value: None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tenant_fields(|s| s.stack.env = env(&["1BAD"])),
        vec!["spec.stack.env[0].name"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.env = env(&["OK", "A-B"])),
        vec!["spec.stack.env[1].name"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.env = env(&["DATABASE_URL"])),
        vec!["spec.stack.env[0].name"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.env = env(&["PGPASSWORD"])),
        vec!["spec.stack.env[0].name"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.env = env(&["BULKHEAD_ORG"])),
        vec!["spec.stack.env[0].name"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.env = env(&["A", "A"])),
        vec!["spec.stack.env[1].name"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.env = env(&["_A", "PGSSLMODE"])),
        Vec::<String>::new()
    );
}

#[test]
fn resources_must_parse_and_requests_fit_limits() {
    assert_eq!(
        tenant_fields(|s| s.stack.resources.requests.cpu = Some("lots".into())),
        vec!["spec.stack.resources.requests.cpu"]
    );
    assert_eq!(
        tenant_fields(|s| s.stack.resources.limits.memory = Some("-1Gi".into())),
        vec!["spec.stack.resources.limits.memory"]
    );
    assert_eq!(
        tenant_fields(|s| {
            s.stack.resources.requests.memory = Some("2Gi".into());
            s.stack.resources.limits.memory = Some("1Gi".into());
        }),
        vec!["spec.stack.resources.requests.memory"]
    );
    assert_eq!(
        tenant_fields(|s| {
            s.stack.resources.requests.cpu = Some("250m".into());
            s.stack.resources.limits.cpu = Some("1".into());
        }),
        Vec::<String>::new()
    );
}

#[test]
fn quota_must_be_positive_quantities() {
    assert_eq!(
        tenant_fields(|s| s.quota.cpu = Some("0".into())),
        vec!["spec.quota.cpu"]
    );
    assert_eq!(
        tenant_fields(|s| s.quota.memory = Some(Quantity("8GB".into()))),
        vec!["spec.quota.memory"]
    );
    assert_eq!(tenant_fields(|s| s.quota.pods = Some(0)), vec!["spec.quota.pods"]);
    assert_eq!(
        tenant_fields(|s| s.quota.pods = Some(1001)),
        vec!["spec.quota.pods"]
    );
    assert_eq!(
        tenant_fields(|s| s.quota = QuotaSpec::default()),
        Vec::<String>::new()
    );
}

#[test]
fn egress_cidrs_and_ports_are_checked() {
    let set = |cidr: &str| {
        let cidr = cidr.to_owned();
        tenant_fields(move |s| s.network.allow_egress[0].cidr = cidr)
    };
    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "10.0.0.0/",
        "x/8",
        "10.0.0.0/8/1",
        "2001:db8::/129",
        "10.0.0.0/+8",
    ] {
        assert_eq!(set(bad), vec!["spec.network.allowEgress[0].cidr"], "{bad}");
    }
    for good in ["10.1.2.3/32", "10.0.0.0/8", "2001:db8::/32", "::1/128"] {
        assert_eq!(set(good), Vec::<String>::new(), "{good}");
    }
    let mut spec = tenant_spec();
    spec.network.allow_egress[0].cidr = "0.0.0.0/0".into();
    let message = tenant("acme", &spec, None).unwrap_err().to_string();
    assert!(
        message.contains("every address, including other tenants' pods"),
        "{message}"
    );
    spec.network.allow_egress[0].cidr = "10.1.2.3/24".into();
    let message = tenant("acme", &spec, None).unwrap_err().to_string();
    assert!(message.contains("did you mean 10.1.2.0/24?"), "{message}");
    assert_eq!(
        tenant_fields(|s| s.network.allow_egress[0].ports[0].port = 0),
        vec!["spec.network.allowEgress[0].ports[0].port"]
    );
}

#[test]
fn connection_limit_range() {
    assert_eq!(
        tenant_fields(|s| s.database.connection_limit = Some(0)),
        vec!["spec.database.connectionLimit"]
    );
    assert_eq!(
        tenant_fields(|s| s.database.connection_limit = Some(1001)),
        vec!["spec.database.connectionLimit"]
    );
}

#[test]
fn identity_fields_are_immutable() {
    let accepted = tenant_identity(&tenant_spec());
    let mut changed = tenant_spec();
    changed.org_id = "org_other".into();
    changed.database.isolation = DatabaseIsolation::Database;
    let err = tenant("acme", &changed, Some(&accepted)).unwrap_err();
    assert_eq!(err.fields(), vec!["spec.orgId", "spec.database.isolation"]);
    assert!(
        err.to_string()
            .contains("is immutable once set: it was \"org_2aXkQ9\""),
        "{err}"
    );

    // Other fields may change freely.
    let mut edited = tenant_spec();
    edited.stack.replicas = 5;
    edited.display_name = None;
    assert_eq!(tenant("acme", &edited, Some(&accepted)), Ok(()));
}

#[test]
fn isolation_may_be_chosen_when_the_database_is_first_enabled() {
    let mut spec = tenant_spec();
    spec.database.enabled = false;
    let accepted = tenant_identity(&spec);
    assert_eq!(accepted.database_isolation, None);
    spec.database = DatabaseSpec {
        enabled: true,
        isolation: DatabaseIsolation::Database,
        connection_limit: None,
    };
    assert_eq!(tenant("acme", &spec, Some(&accepted)), Ok(()));
}

#[test]
fn customer_tenant_ref_is_checked_and_immutable() {
    let mut spec = customer_spec();
    spec.tenant_ref = "Not A Name".into();
    assert_eq!(
        customer("client-1", &spec, None).unwrap_err().fields(),
        vec!["spec.tenantRef"]
    );

    let accepted = customer_identity(&customer_spec());
    let mut moved = customer_spec();
    moved.tenant_ref = "other-msp".into();
    assert_eq!(
        customer("client-1", &moved, Some(&accepted))
            .unwrap_err()
            .fields(),
        vec!["spec.tenantRef"]
    );
}

#[test]
fn customer_stack_override_is_validated() {
    let mut spec = customer_spec();
    spec.stack = Some(StackSpec { port: 22, ..stack() });
    assert_eq!(
        customer("client-1", &spec, None).unwrap_err().fields(),
        vec!["spec.stack.port"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = tenant_spec();
    spec.org_id = String::new();
    spec.stack.port = 0;
    spec.quota.pods = Some(-3);
    let err = tenant("Bad", &spec, None).unwrap_err();
    assert_eq!(
        err.fields(),
        vec![
            "metadata.name",
            "spec.orgId",
            "spec.stack.port",
            "spec.quota.pods"
        ]
    );
    assert_eq!(err.to_string().matches("; ").count(), 3);
}
