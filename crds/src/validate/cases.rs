//! The validation cases: specs, each with the fields that must be refused (none for a valid spec).
//!
//! Both enforcers of the rules run every case: the unit tests of [`crate::validate`] through the operator's
//! checks, and the admission test (`e2e/tests/admission_validation.rs`) through a real API server that has the
//! generated CRDs. The two must refuse exactly the listed fields, with the same words. A case with a `before`
//! spec is a change: the object is first created with `before`, then updated to `spec`.

use serde_json::Value;

use super::{ValidationErrors, customer, customer_identity, tenant, tenant_identity};
use crate::v1alpha1::{
    Customer, CustomerSpec, DatabaseIsolation, DatabaseSpec, DeletionPolicy, EgressPort, EgressRule, EnvVar,
    NetworkSpec, Protocol, QuotaSpec, StackResources, StackSpec, Tenant, TenantSpec,
};

/// The fields named by a manifest's `# refused: <field> (why)` comments: how the files in `examples/invalid/`
/// state what must be refused in them.
pub fn commented_refusals(manifest: &str) -> std::collections::BTreeSet<String> {
    manifest
        .lines()
        .filter_map(|l| l.split_once("# refused: ").map(|(_, f)| f))
        .filter_map(|f| f.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A Tenant's or a Customer's spec.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// A Tenant's.
    Tenant(TenantSpec),
    /// A Customer's.
    Customer(CustomerSpec),
}

/// One case: a resource and the fields that must be refused.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the case checks, for failure messages.
    pub what: String,
    /// The resource's `metadata.name`.
    pub name: String,
    /// The spec under test.
    pub spec: Spec,
    /// For a change: the spec the resource had before (and the operator accepted).
    pub before: Option<Spec>,
    /// The fields that must be refused, in the order the operator reports them.
    pub refused: Vec<String>,
}

impl Case {
    /// Runs the operator's checks on the case.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        match (&self.spec, &self.before) {
            (Spec::Tenant(spec), before) => {
                let accepted = match before {
                    Some(Spec::Tenant(before)) => Some(tenant_identity(before)),
                    _ => None,
                };
                tenant(&self.name, spec, accepted.as_ref())
            }
            (Spec::Customer(spec), before) => {
                let accepted = match before {
                    Some(Spec::Customer(before)) => Some(customer_identity(before)),
                    _ => None,
                };
                customer(&self.name, spec, accepted.as_ref())
            }
        }
    }

    /// The resource as the API server receives it, with `spec` (or with `before`, when `before` is true).
    pub fn object(&self, before: bool) -> Result<Value, serde_json::Error> {
        let spec = if before {
            self.before.as_ref().unwrap_or(&self.spec)
        } else {
            &self.spec
        };
        match spec {
            Spec::Tenant(spec) => serde_json::to_value(Tenant::new(&self.name, spec.clone())),
            Spec::Customer(spec) => serde_json::to_value(Customer::new(&self.name, spec.clone())),
        }
    }

    /// The kind's plural, as the API names it.
    pub fn plural(&self) -> &'static str {
        match self.spec {
            Spec::Tenant(_) => "tenants",
            Spec::Customer(_) => "customers",
        }
    }
}

/// A valid stack.
pub fn valid_stack() -> StackSpec {
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

/// A valid Tenant spec that sets every field.
pub fn valid_tenant() -> TenantSpec {
    TenantSpec {
        org_id: "org_2aXkQ9".into(),
        display_name: Some("ACME IT Services".into()),
        stack: valid_stack(),
        database: DatabaseSpec {
            enabled: true,
            isolation: DatabaseIsolation::Schema,
            connection_limit: Some(10),
            server: None,
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

/// A valid Customer spec with the defaults.
pub fn valid_customer() -> CustomerSpec {
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

/// Environment variables with these names and no values.
pub fn env(names: &[&str]) -> Vec<EnvVar> {
    names
        .iter()
        .map(|n| EnvVar {
            name: (*n).into(),
            value: None,
        })
        .collect()
}

#[derive(Default)]
struct Cases(Vec<Case>);

impl Cases {
    fn add(
        &mut self,
        what: impl Into<String>,
        name: &str,
        spec: Spec,
        before: Option<Spec>,
        refused: &[&str],
    ) {
        self.0.push(Case {
            what: what.into(),
            name: name.into(),
            spec,
            before,
            refused: refused.iter().map(|f| (*f).to_owned()).collect(),
        });
    }

    /// A Tenant named `acme`: the valid one, changed by `f`.
    fn tenant(&mut self, what: impl Into<String>, refused: &[&str], f: impl FnOnce(&mut TenantSpec)) {
        let mut spec = valid_tenant();
        f(&mut spec);
        self.add(what, "acme", Spec::Tenant(spec), None, refused);
    }

    /// A Customer named `client-1`: the valid one, changed by `f`.
    fn customer(&mut self, what: impl Into<String>, refused: &[&str], f: impl FnOnce(&mut CustomerSpec)) {
        let mut spec = valid_customer();
        f(&mut spec);
        self.add(what, "client-1", Spec::Customer(spec), None, refused);
    }
}

const NONE: &[&str] = &[];

/// Every case.
pub fn all() -> Vec<Case> {
    let mut c = Cases::default();
    c.tenant("a complete valid Tenant", NONE, |_| {});
    c.customer("a valid Customer", NONE, |_| {});

    for bad in ["ACME", "acme_it", "-acme", "acme-", "a.b", &"a".repeat(64)] {
        c.add(
            format!("name {bad:?}"),
            bad,
            Spec::Tenant(valid_tenant()),
            None,
            &["metadata.name"],
        );
    }
    c.add(
        "a 63-character name",
        &"a".repeat(63),
        Spec::Tenant(valid_tenant()),
        None,
        NONE,
    );

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
        c.tenant(format!("orgId {bad:?}"), &["spec.orgId"], |s| {
            s.org_id = bad.into()
        });
    }
    for good in ["org_2aXk", "a", "tenant-1.example:prod", &"o".repeat(128)] {
        c.tenant(format!("orgId {good:?}"), NONE, |s| s.org_id = good.into());
    }

    c.tenant("a 257-character displayName", &["spec.displayName"], |s| {
        s.display_name = Some("a".repeat(257));
    });
    c.tenant(
        "a displayName with a control character",
        &["spec.displayName"],
        |s| {
            s.display_name = Some("bad\u{7}".into());
        },
    );
    c.tenant("a displayName with letters outside ASCII", NONE, |s| {
        s.display_name = Some("Zürich GmbH".into());
    });

    let digest = format!("nginx@sha256:{}", "a".repeat(64));
    for good in [
        "nginx",
        "nginx:1.27",
        "library/nginx:latest",
        "registry.example.com/acme/portal:1.4.2",
        "localhost:5000/portal",
        "127.0.0.1:5000/a/b/c:v1",
        "ghcr.io/org/my_app__x.y-z:1.0-rc.1",
        "Registry.Example.com/app",
        "nginx.io",
        digest.as_str(),
    ] {
        c.tenant(format!("image {good:?}"), NONE, |s| s.stack.image = good.into());
    }
    let long_name = "a".repeat(300);
    for bad in [
        "",
        "Bad Image",
        "Nginx",
        "nginx:",
        "nginx:.bad",
        "nginx@sha256:abc",
        "a//b",
        "a/b_",
        "a/b___c",
        "a/b..c",
        "bad_host.:5000/a",
        "a_b.c/x",
        "host:port/a",
        "nginx; rm -rf /",
        long_name.as_str(),
    ] {
        c.tenant(format!("image {bad:?}"), &["spec.stack.image"], |s| {
            s.stack.image = bad.into()
        });
    }

    for (port, refused) in [(80, true), (65536, true), (1024, false), (65535, false)] {
        let fields: &[&str] = if refused { &["spec.stack.port"] } else { NONE };
        c.tenant(format!("stack port {port}"), fields, |s| s.stack.port = port);
    }
    for (replicas, refused) in [(-1, true), (101, true), (0, false), (100, false)] {
        let fields: &[&str] = if refused { &["spec.stack.replicas"] } else { NONE };
        c.tenant(format!("{replicas} replicas"), fields, |s| {
            s.stack.replicas = replicas
        });
    }

    for (names, refused) in [
        (&["1BAD"][..], &["spec.stack.env[0].name"][..]),
        (&["OK", "A-B"], &["spec.stack.env[1].name"]),
        (&["DATABASE_URL"], &["spec.stack.env[0].name"]),
        (&["PGPASSWORD"], &["spec.stack.env[0].name"]),
        (&["BULKHEAD_ORG"], &["spec.stack.env[0].name"]),
        (&["A", "A"], &["spec.stack.env[1]"]),
        (&["_A", "PGSSLMODE"], NONE),
    ] {
        c.tenant(format!("env {names:?}"), refused, |s| s.stack.env = env(names));
    }
    c.tenant(
        "an env value over 32768 characters",
        &["spec.stack.env[0].value"],
        |s| {
            s.stack.env[0].value = Some("x".repeat(32 * 1024 + 1));
        },
    );
    c.tenant("an env value of 32768 characters, not all ASCII", NONE, |s| {
        s.stack.env[0].value = Some("ü".repeat(32 * 1024));
    });
    let names: Vec<String> = (0..=256).map(|i| format!("V{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    c.tenant("257 env variables", &["spec.stack.env"], |s| {
        s.stack.env = env(&names)
    });
    c.tenant("256 env variables", NONE, |s| s.stack.env = env(&names[..256]));
    c.tenant("129 egress destinations", &["spec.network.allowEgress"], |s| {
        s.network.allow_egress = (0..129)
            .map(|i| EgressRule {
                cidr: format!("203.0.{i}.0/24"),
                ports: vec![],
            })
            .collect();
    });
    c.tenant(
        "33 ports of one egress destination",
        &["spec.network.allowEgress[0].ports"],
        |s| {
            s.network.allow_egress[0].ports = (1..=33)
                .map(|port| EgressPort {
                    port,
                    protocol: Protocol::TCP,
                })
                .collect();
        },
    );

    c.tenant(
        "a CPU request that is not a quantity",
        &["spec.stack.resources.requests.cpu"],
        |s| {
            s.stack.resources.requests.cpu = Some("lots".into());
        },
    );
    c.tenant(
        "a negative memory limit",
        &["spec.stack.resources.limits.memory"],
        |s| {
            s.stack.resources.limits.memory = Some("-1Gi".into());
        },
    );
    c.tenant(
        "a memory request above its limit",
        &["spec.stack.resources.requests.memory"],
        |s| {
            s.stack.resources.requests.memory = Some("2Gi".into());
            s.stack.resources.limits.memory = Some("1Gi".into());
        },
    );
    c.tenant("a CPU request within its limit", NONE, |s| {
        s.stack.resources.requests.cpu = Some("250m".into());
        s.stack.resources.limits.cpu = Some("1".into());
    });

    c.tenant("a quota of zero CPU", &["spec.quota.cpu"], |s| {
        s.quota.cpu = Some("0".into())
    });
    c.tenant("a quota of negative memory", &["spec.quota.memory"], |s| {
        s.quota.memory = Some("-1Gi".into());
    });
    c.tenant("a quota in GB (not a quantity)", &["spec.quota.memory"], |s| {
        s.quota.memory = Some("8GB".into());
    });
    c.tenant("a quota of 0 pods", &["spec.quota.pods"], |s| {
        s.quota.pods = Some(0)
    });
    c.tenant("a quota of 1001 pods", &["spec.quota.pods"], |s| {
        s.quota.pods = Some(1001)
    });
    c.tenant("the default quota", NONE, |s| s.quota = QuotaSpec::default());

    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "10.0.0.0/",
        "x/8",
        "10.0.0.0/8/1",
        "2001:db8::/129",
        "10.0.0.0/+8",
        "10.0.0.0/08",
        "010.0.0.0/8",
        "0.0.0.0/0",
        "::/0",
        "10.1.2.3/24",
        "2001:db8::1/32",
    ] {
        c.tenant(
            format!("egress CIDR {bad:?}"),
            &["spec.network.allowEgress[0].cidr"],
            |s| {
                s.network.allow_egress[0].cidr = bad.into();
            },
        );
    }
    for good in ["10.1.2.3/32", "10.0.0.0/8", "2001:db8::/32", "::1/128"] {
        c.tenant(format!("egress CIDR {good:?}"), NONE, |s| {
            s.network.allow_egress[0].cidr = good.into();
        });
    }
    c.tenant(
        "egress port 0",
        &["spec.network.allowEgress[0].ports[0].port"],
        |s| {
            s.network.allow_egress[0].ports[0].port = 0;
        },
    );

    c.tenant(
        "a connection limit of 0",
        &["spec.database.connectionLimit"],
        |s| {
            s.database.connection_limit = Some(0);
        },
    );
    c.tenant(
        "a connection limit of 1001",
        &["spec.database.connectionLimit"],
        |s| {
            s.database.connection_limit = Some(1001);
        },
    );

    let mut changed = valid_tenant();
    changed.org_id = "org_other".into();
    changed.database.isolation = DatabaseIsolation::Database;
    c.add(
        "a Tenant's orgId and database isolation changed",
        "acme",
        Spec::Tenant(changed),
        Some(Spec::Tenant(valid_tenant())),
        &["spec.orgId", "spec.database.isolation"],
    );
    let mut edited = valid_tenant();
    edited.stack.replicas = 5;
    edited.display_name = None;
    c.add(
        "a Tenant's other fields changed",
        "acme",
        Spec::Tenant(edited),
        Some(Spec::Tenant(valid_tenant())),
        NONE,
    );
    let mut disabled = valid_tenant();
    disabled.database.enabled = false;
    let mut enabled = valid_tenant();
    enabled.database = DatabaseSpec {
        enabled: true,
        isolation: DatabaseIsolation::Database,
        connection_limit: None,
        server: Some("eu-2".into()),
    };
    c.add(
        "the isolation and server chosen when the database is first enabled",
        "acme",
        Spec::Tenant(enabled),
        Some(Spec::Tenant(disabled)),
        NONE,
    );

    c.tenant("a server that is not a name", &["spec.database.server"], |s| {
        s.database.server = Some("EU 2".into());
    });
    c.tenant("a server named", NONE, |s| {
        s.database.server = Some("eu-2".into());
    });
    let mut moved_server = valid_tenant();
    moved_server.database.server = Some("eu-2".into());
    c.add(
        "a Tenant's database moved from the default server to a named one",
        "acme",
        Spec::Tenant(moved_server.clone()),
        Some(Spec::Tenant(valid_tenant())),
        &["spec.database.server"],
    );
    c.add(
        "a Tenant's database moved from a named server back to the default",
        "acme",
        Spec::Tenant(valid_tenant()),
        Some(Spec::Tenant(moved_server)),
        &["spec.database.server"],
    );
    let mut customer_enabled = valid_customer();
    customer_enabled.database.enabled = true;
    let mut customer_moved = customer_enabled.clone();
    customer_moved.database.server = Some("eu-2".into());
    c.add(
        "a Customer's database moved to another server",
        "client-1",
        Spec::Customer(customer_moved),
        Some(Spec::Customer(customer_enabled)),
        &["spec.database.server"],
    );

    c.customer("a tenantRef that is not a name", &["spec.tenantRef"], |s| {
        s.tenant_ref = "Not A Name".into();
    });
    let mut moved = valid_customer();
    moved.tenant_ref = "other-msp".into();
    c.add(
        "a Customer moved to another Tenant",
        "client-1",
        Spec::Customer(moved),
        Some(Spec::Customer(valid_customer())),
        &["spec.tenantRef"],
    );
    c.customer("a Customer's own stack on port 22", &["spec.stack.port"], |s| {
        s.stack = Some(StackSpec {
            port: 22,
            ..valid_stack()
        });
    });

    let mut many = valid_tenant();
    many.org_id = String::new();
    many.stack.port = 0;
    many.quota.pods = Some(-3);
    c.add(
        "every problem at once",
        "Bad",
        Spec::Tenant(many),
        None,
        &[
            "metadata.name",
            "spec.orgId",
            "spec.stack.port",
            "spec.quota.pods",
        ],
    );
    c.0
}
