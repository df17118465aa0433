//! Tenants and Customers as routing reads them, for the route table's tests, its benchmark and the gateway's
//! tests against a real API server: one stack spec, a status with the `Ready` and `Routable` conditions in the
//! namespace the naming rules give, and resources built from them.

use bulkhead_crds::naming;
use bulkhead_crds::v1alpha1::{
    Condition, Customer, CustomerSpec, ResourceStatus, StackSpec, Tenant, TenantSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A condition of `type_`, True when `ok`.
pub fn condition(type_: &str, ok: bool, reason: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// A status in `namespace`: Ready and Routable both `ready`.
pub fn status(namespace: &str, ready: bool) -> ResourceStatus {
    ResourceStatus {
        namespace: Some(namespace.into()),
        conditions: vec![
            condition("Ready", ready, if ready { "Provisioned" } else { "Pending" }),
            condition(
                "Routable",
                ready,
                if ready { "Routable" } else { "StackNotReady" },
            ),
        ],
        ..Default::default()
    }
}

/// A one-replica stack listening on `port`.
pub fn stack(port: i32) -> StackSpec {
    StackSpec {
        image: "registry.example/app:1".into(),
        port,
        replicas: 1,
        env: vec![],
        resources: Default::default(),
    }
}

/// The Tenant `name` claiming `org`, its stack on port 8080, with a status (see [`status`]) in its namespace.
pub fn tenant(name: &str, org: &str, ready: bool) -> Tenant {
    let mut t = Tenant::new(
        name,
        TenantSpec {
            org_id: org.into(),
            display_name: None,
            stack: stack(8080),
            database: Default::default(),
            quota: Default::default(),
            network: Default::default(),
            deletion_policy: Default::default(),
        },
    );
    t.status = Some(status(&naming::tenant_namespace(name), ready));
    t
}

/// The Customer `name` of Tenant `tenant` claiming `org`, with its own stack on `port` if given, and a status
/// (see [`status`]) in its namespace.
pub fn customer(tenant: &str, name: &str, org: &str, ready: bool, port: Option<i32>) -> Customer {
    let mut c = Customer::new(
        name,
        CustomerSpec {
            tenant_ref: tenant.into(),
            org_id: org.into(),
            display_name: None,
            stack: port.map(stack),
            database: Default::default(),
            quota: Default::default(),
            deletion_policy: Default::default(),
        },
    );
    c.status = Some(status(&naming::customer_namespace(tenant, name), ready));
    c
}
