use super::*;

const SHARED: &str = "app";

fn subject(tenant: &str, customer: Option<&str>, isolation: DatabaseIsolation) -> Subject {
    Subject {
        tenant: tenant.into(),
        customer: customer.map(str::to_owned),
        isolation,
    }
}

fn hardened() -> RoleRow {
    RoleRow {
        flags: [false, false, false, false, true, false, false],
        connection_limit: 20,
        expires: false,
        comment: Some(format!("{}x", crate::postgres::sql::ROLE_MARKER_PREFIX)),
    }
}

fn own_database(login: &str, database: &str) -> DatabaseReach {
    DatabaseReach {
        login: login.into(),
        database: database.into(),
        connect: true,
        temporary: false,
        via: Via {
            grants: vec![format!("CONNECT to {login} by owner")],
            through_role: true,
            through_owner: false,
        },
    }
}

fn public(database: &str, kind: ObjectKind, name: &str, privilege: &str) -> PublicGrant {
    PublicGrant {
        database: database.into(),
        kind,
        name: name.into(),
        display: name.into(),
        privilege: privilege.into(),
        held: false,
        grantors: String::new(),
        revocable: true,
    }
}

const FUNCTION: &str = "\"pg_catalog\".\"pg_partition_tree\"(\"regclass\")";

/// Tenants `a` and `b` in Schema isolation and `c` in Database isolation, provisioned and hardened.
fn clean() -> Facts {
    let subjects = [
        subject("a", None, DatabaseIsolation::Schema),
        subject("b", None, DatabaseIsolation::Schema),
        subject("c", None, DatabaseIsolation::Database),
    ];
    let scopes = scopes(SHARED, &subjects);
    let c_db = scopes[2].database.clone();
    let mut public_grants = Vec::new();
    for db in [SHARED, "postgres", "template1", &c_db] {
        for privilege in ["CONNECT", "TEMPORARY"] {
            public_grants.push(public(db, ObjectKind::Database, db, privilege));
        }
    }
    for db in [SHARED, c_db.as_str()] {
        public_grants.push(public(db, ObjectKind::Schema, "public", "CREATE"));
        public_grants.push(public(db, ObjectKind::Function, FUNCTION, "EXECUTE"));
    }
    public_grants.push(public(SHARED, ObjectKind::View, "pg_catalog.pg_stats", "SELECT"));
    let functions = scopes
        .iter()
        .map(|s| FunctionReach {
            database: s.database.clone(),
            login: s.names.login.clone(),
            signature: FUNCTION.into(),
            display: "pg_catalog.pg_partition_tree(regclass)".into(),
            executable: false,
        })
        .collect();
    let schemas = scopes
        .iter()
        .map(|s| SchemaReach {
            database: SHARED.into(),
            login: s.names.login.clone(),
            schema: "public".into(),
            owner: "pg_database_owner".into(),
            owner_bulkhead: false,
            usage: true,
            create: false,
            via: Via {
                grants: vec!["USAGE to PUBLIC by pg_database_owner".into()],
                ..Via::default()
            },
        })
        .collect();
    Facts {
        shared_database: SHARED.into(),
        admin_superuser: true,
        databases: vec![
            SHARED.into(),
            "postgres".into(),
            "template0".into(),
            "template1".into(),
            c_db.clone(),
        ],
        inspected: vec![SHARED.into(), c_db],
        roles: scopes
            .iter()
            .map(|s| (s.names.login.clone(), hardened()))
            .collect(),
        database_reach: scopes
            .iter()
            .map(|s| own_database(&s.names.login, &s.database))
            .collect(),
        public_grants,
        schemas,
        functions,
        scopes,
        ..Facts::default()
    }
}

fn names(facts: &Facts, i: usize) -> Names {
    facts.scopes[i].names.clone()
}

fn the<'c>(checks: &'c [Check], id: &str, subject: &str) -> &'c Check {
    let found: Vec<&Check> = checks
        .iter()
        .filter(|c| c.id == id && c.subject == subject)
        .collect();
    assert_eq!(found.len(), 1, "{id} {subject}: {checks:#?}");
    found[0]
}

fn verdicts(checks: &[Check], verdict: Verdict) -> Vec<&Check> {
    checks.iter().filter(|c| c.verdict == verdict).collect()
}

#[test]
fn a_clean_server_passes_every_check_and_shows_what_was_checked() {
    let facts = clean();
    let checks = classify(&facts);
    assert!(
        checks.iter().all(|c| c.verdict == Verdict::Pass),
        "{:#?}",
        checks
            .iter()
            .filter(|c| c.verdict != Verdict::Pass)
            .collect::<Vec<_>>()
    );
    // One per hardened object, seven per subject.
    let objects = 4 + 2 + 2 + 1;
    assert_eq!(checks.len(), objects + 7 * 3);
    for scope in &facts.scopes {
        for id in PER_ROLE {
            let check = the(&checks, id, &scope.names.login);
            assert_eq!(check.evidence["role"], json!(scope.names.login), "{check:?}");
        }
    }
    let c = &facts.scopes[2];
    let databases = the(&checks, DATABASES, &c.names.login);
    assert_eq!(databases.evidence["can_connect"], json!([c.names.place]));
    assert_eq!(the(&checks, PUBLIC_GRANTS, "database app").verdict, Verdict::Pass);
}

#[test]
fn scopes_put_database_subjects_in_their_own_database_and_skip_repeats() {
    let a = subject("a", None, DatabaseIsolation::Schema);
    let d = subject("a", Some("d"), DatabaseIsolation::Database);
    let scopes = scopes(SHARED, &[a.clone(), d.clone(), a.clone()]);
    assert_eq!(scopes.len(), 2);
    assert_eq!(scopes[0].database, SHARED);
    assert_eq!(scopes[1].database, scopes[1].names.place);
    assert_eq!(d.label(), "Customer a/d");
    assert_eq!(a.label(), "Tenant a");
}

#[test]
fn another_subjects_table_granted_to_a_login_role_fails_naming_it() {
    let mut facts = clean();
    let (a, b) = (names(&facts, 0), names(&facts, 1));
    facts.relations.push(RelationReach {
        database: SHARED.into(),
        login: a.login.clone(),
        schema: b.place.clone(),
        name: "t".into(),
        kind: "r".into(),
        owner: b.login.clone(),
        owner_bulkhead: true,
        privileges: vec!["SELECT".into()],
        via: Via {
            grants: vec![format!("SELECT to {} by {}", a.login, b.login)],
            through_role: true,
            through_owner: false,
        },
    });
    let checks = classify(&facts);
    let check = the(&checks, RELATIONS, &a.login);
    assert_eq!(check.verdict, Verdict::Fail);
    assert!(
        check.summary.contains(&format!("SELECT on table {}.t", b.place))
            && check.summary.contains("Tenant b"),
        "{}",
        check.summary
    );
    assert_eq!(check.evidence["findings"][0]["name"], json!("t"));
    assert_eq!(check.evidence["findings"][0]["privileges"], json!(["SELECT"]));
    assert_eq!(the(&checks, RELATIONS, &b.login).verdict, Verdict::Pass);
    assert_eq!(verdicts(&checks, Verdict::Fail).len(), 1);
}

#[test]
fn anything_in_a_database_subjects_database_belongs_to_it() {
    let mut facts = clean();
    let (a, c) = (names(&facts, 0), names(&facts, 2));
    facts.relations.push(RelationReach {
        database: c.place.clone(),
        login: a.login.clone(),
        schema: "public".into(),
        name: "ids".into(),
        kind: "S".into(),
        owner: "someone".into(),
        owner_bulkhead: false,
        privileges: vec!["USAGE".into()],
        via: Via {
            grants: vec!["USAGE to PUBLIC by someone".into()],
            ..Via::default()
        },
    });
    let checks = classify(&facts);
    let check = the(&checks, RELATIONS, &a.login);
    assert_eq!(check.verdict, Verdict::Fail);
    assert!(check.summary.contains("sequence public.ids"), "{}", check.summary);
    assert!(check.summary.contains("Tenant c"), "{}", check.summary);
}

#[test]
fn a_large_object_granted_to_public_or_another_subject_fails_naming_oid_and_owner() {
    let mut facts = clean();
    let (a, b) = (names(&facts, 0), names(&facts, 1));
    let grant = |oid, grantee: Option<&str>, bulkhead| LargeObjectGrant {
        database: SHARED.into(),
        oid,
        owner: a.login.clone(),
        grantee: grantee.map(str::to_owned),
        grantee_bulkhead: bulkhead,
        privilege: "SELECT".into(),
        grantor: a.login.clone(),
    };
    facts.large_objects = vec![
        grant(16395, None, false),
        grant(16396, Some(&b.login), true),
        grant(16397, Some(&a.owner), true),
        grant(16398, Some("reporting"), false),
    ];
    let checks = classify(&facts);
    let check = the(&checks, LARGE_OBJECTS, &a.login);
    assert_eq!(check.verdict, Verdict::Fail);
    assert!(
        check.summary.contains("large object 16395")
            && check.summary.contains(&format!("owner {}", a.login))
            && check.summary.contains("to PUBLIC"),
        "{}",
        check.summary
    );
    assert!(check.summary.contains("large object 16396"), "{}", check.summary);
    assert!(
        !check.summary.contains("16397"),
        "its own roles are not a finding"
    );
    let findings = check.evidence["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    assert_eq!(
        findings[2]["grantee"],
        json!("reporting"),
        "the warning comes last"
    );
    assert_eq!(the(&checks, LARGE_OBJECTS, &b.login).verdict, Verdict::Pass);
}

#[test]
fn public_connect_fails_where_the_admin_could_revoke_it_and_warns_where_it_cannot() {
    let mut facts = clean();
    let (a, c) = (names(&facts, 0), names(&facts, 2));
    for g in &mut facts.public_grants {
        if g.kind == ObjectKind::Database && g.privilege == "CONNECT" {
            if g.name == SHARED {
                g.held = true;
                g.grantors = "bulkhead_admin".into();
            } else if g.name == "postgres" {
                g.held = true;
                g.grantors = "postgres".into();
                g.revocable = false;
            }
        }
    }
    for scope in &facts.scopes.clone() {
        facts.database_reach.push(DatabaseReach {
            login: scope.names.login.clone(),
            database: "postgres".into(),
            connect: true,
            temporary: false,
            via: Via {
                grants: vec!["CONNECT to PUBLIC by postgres".into()],
                ..Via::default()
            },
        });
    }
    facts.database_reach.push(DatabaseReach {
        login: c.login.clone(),
        database: SHARED.into(),
        connect: true,
        temporary: false,
        via: Via {
            grants: vec!["CONNECT to PUBLIC by bulkhead_admin".into()],
            ..Via::default()
        },
    });
    let checks = classify(&facts);
    let shared = the(&checks, PUBLIC_GRANTS, "database app");
    assert_eq!(shared.verdict, Verdict::Fail);
    assert!(
        shared.summary.contains("CONNECT on database app"),
        "{}",
        shared.summary
    );
    let postgres = the(&checks, PUBLIC_GRANTS, "database postgres");
    assert_eq!(postgres.verdict, Verdict::Warn, "{postgres:?}");
    let c_check = the(&checks, DATABASES, &c.login);
    assert_eq!(c_check.verdict, Verdict::Fail);
    assert!(
        c_check.summary.contains("CONNECT on database app"),
        "{}",
        c_check.summary
    );
    let a_check = the(&checks, DATABASES, &a.login);
    assert_eq!(a_check.verdict, Verdict::Warn, "{a_check:?}");
    assert_eq!(a_check.evidence["can_connect"], json!([SHARED, "postgres"]));
}

#[test]
fn a_direct_grant_fails_even_where_public_has_an_unrevocable_one() {
    let mut facts = clean();
    let a = names(&facts, 0);
    for g in &mut facts.public_grants {
        if g.name == "postgres" && g.privilege == "CONNECT" {
            g.held = true;
            g.revocable = false;
        }
    }
    facts.database_reach.push(DatabaseReach {
        login: a.login.clone(),
        database: "postgres".into(),
        connect: true,
        temporary: false,
        via: Via {
            grants: vec![
                "CONNECT to PUBLIC by postgres".into(),
                format!("CONNECT to {} by postgres", a.login),
            ],
            through_role: true,
            through_owner: false,
        },
    });
    assert_eq!(the(&classify(&facts), DATABASES, &a.login).verdict, Verdict::Fail);
}

#[test]
fn a_missing_database_or_login_role_fails() {
    let mut facts = clean();
    let (a, c) = (names(&facts, 0), names(&facts, 2));
    facts.databases.retain(|d| d != &c.place);
    facts.roles.remove(&a.login);
    let checks = classify(&facts);
    let missing = the(&checks, ROLE_ATTRIBUTES, &a.login);
    assert_eq!(missing.verdict, Verdict::Fail);
    assert!(missing.summary.contains("does not exist"), "{}", missing.summary);
    // Nothing else can be said of a role that does not exist, but its subject's large objects still can.
    assert_eq!(checks.iter().filter(|ch| ch.subject == a.login).count(), 2);
    let database = the(&checks, DATABASES, &c.login);
    assert_eq!(database.verdict, Verdict::Fail);
    assert!(database.summary.contains(&c.place), "{}", database.summary);
}

#[test]
fn attributes_other_than_provisionings_fail_and_a_superuser_reaches_everything() {
    let mut facts = clean();
    let a = names(&facts, 0);
    let role = facts.roles.get_mut(&a.login).unwrap();
    role.flags[0] = true;
    role.flags[1] = true;
    let checks = classify(&facts);
    let attributes = the(&checks, ROLE_ATTRIBUTES, &a.login);
    assert_eq!(attributes.verdict, Verdict::Fail);
    assert!(
        attributes.summary.contains("has SUPERUSER") && attributes.summary.contains("has INHERIT"),
        "{}",
        attributes.summary
    );
    for id in [DATABASES, SCHEMAS, RELATIONS] {
        assert_eq!(the(&checks, id, &a.login).verdict, Verdict::Fail, "{id}");
    }

    let mut facts = clean();
    facts.roles.get_mut(&a.login).unwrap().comment = None;
    assert_eq!(
        the(&classify(&facts), ROLE_ATTRIBUTES, &a.login).verdict,
        Verdict::Warn
    );
}

#[test]
fn memberships_are_judged_by_what_the_role_can_do() {
    let mut facts = clean();
    let (a, b) = (names(&facts, 0), names(&facts, 1));
    let member = |role: &str, bulkhead, predefined, attributes: &[&str], holds| Membership {
        login: a.login.clone(),
        role: role.into(),
        direct: true,
        predefined,
        attributes: attributes.iter().map(|s| (*s).to_owned()).collect(),
        bulkhead,
        holds_objects: holds,
    };
    let cases = [
        (member(&b.owner, true, false, &[], true), Verdict::Fail),
        (member("bk_gone_owner", true, false, &[], false), Verdict::Fail),
        (member("pg_read_all_data", false, true, &[], false), Verdict::Fail),
        (
            member(
                "bulkhead_admin",
                false,
                false,
                &["CREATEROLE", "CREATEDB", "LOGIN"],
                true,
            ),
            Verdict::Fail,
        ),
        (member("reporting", false, false, &[], true), Verdict::Fail),
        (member(&a.owner, true, false, &[], true), Verdict::Warn),
        (member("empty", false, false, &[], false), Verdict::Warn),
    ];
    for (membership, verdict) in cases {
        let mut facts = facts.clone();
        let role = membership.role.clone();
        facts.memberships.push(membership);
        let check = the(&classify(&facts), MEMBERSHIPS, &a.login).clone();
        assert_eq!(check.verdict, verdict, "{role}: {check:?}");
        assert!(
            check.summary.contains(&format!("member of {role}")),
            "{}",
            check.summary
        );
    }
    facts.memberships.push(member(&b.owner, true, false, &[], true));
    let check = the(&classify(&facts), MEMBERSHIPS, &a.login).clone();
    assert!(check.summary.contains("Tenant b"), "{}", check.summary);
    assert_eq!(check.evidence["member_of"], json!([b.owner]));
}

#[test]
fn schemas_beyond_its_own_are_judged_by_whose_they_are() {
    let facts = clean();
    let (a, b) = (names(&facts, 0), names(&facts, 1));
    let reach = |schema: &str, owner: &str, bulkhead: bool, create: bool, only_public: bool| SchemaReach {
        database: SHARED.into(),
        login: a.login.clone(),
        schema: schema.into(),
        owner: owner.into(),
        owner_bulkhead: bulkhead,
        usage: true,
        create,
        via: Via {
            grants: vec!["USAGE to someone by someone".into()],
            through_role: !only_public,
            through_owner: false,
        },
    };
    let cases = [
        (
            reach(&b.place, &b.owner, true, false, false),
            false,
            Verdict::Fail,
        ),
        (
            reach("public", "pg_database_owner", false, true, true),
            true,
            Verdict::Warn,
        ),
        (
            reach("public", "pg_database_owner", false, true, true),
            false,
            Verdict::Fail,
        ),
        (
            reach("public", "pg_database_owner", false, true, false),
            true,
            Verdict::Fail,
        ),
        (
            reach("reports", "analyst", false, false, true),
            false,
            Verdict::Warn,
        ),
        (reach("extra", &a.owner, true, true, false), false, Verdict::Pass),
    ];
    let c = names(&facts, 2);
    let in_c = |gap| {
        let mut row = reach("public", "postgres", false, true, true);
        row.database = c.place.clone();
        (row, gap, if gap { Verdict::Warn } else { Verdict::Fail })
    };
    for (row, gap, verdict) in cases.into_iter().chain([in_c(true), in_c(false)]) {
        let mut facts = facts.clone();
        if gap {
            for g in &mut facts.public_grants {
                if g.kind == ObjectKind::Schema && g.database == row.database {
                    g.held = true;
                    g.revocable = false;
                }
            }
        }
        let schema = row.schema.clone();
        facts.schemas.push(row);
        let check = the(&classify(&facts), SCHEMAS, &a.login).clone();
        assert_eq!(check.verdict, verdict, "{schema} (gap {gap}): {check:?}");
        if verdict != Verdict::Pass {
            assert!(
                check.summary.contains(&format!("schema {schema}")),
                "{}",
                check.summary
            );
        }
    }
}

#[test]
fn lock_functions_fail_unless_public_keeps_them_out_of_the_admins_reach() {
    let mut facts = clean();
    let a = names(&facts, 0);
    for f in &mut facts.functions {
        if f.login == a.login {
            f.executable = true;
        }
    }
    let check = the(&classify(&facts), LOCK_FUNCTIONS, &a.login).clone();
    assert_eq!(check.verdict, Verdict::Fail);
    assert!(
        check.summary.contains("pg_catalog.pg_partition_tree(regclass)"),
        "{}",
        check.summary
    );
    for g in &mut facts.public_grants {
        if g.kind == ObjectKind::Function && g.database == SHARED {
            g.held = true;
            g.revocable = false;
            g.grantors = "postgres".into();
        }
    }
    let checks = classify(&facts);
    assert_eq!(the(&checks, LOCK_FUNCTIONS, &a.login).verdict, Verdict::Warn);
    let public = the(
        &checks,
        PUBLIC_GRANTS,
        &format!("function {FUNCTION} in database app"),
    );
    assert_eq!(public.verdict, Verdict::Warn);
    assert!(
        public.summary.contains("does not act for postgres"),
        "{}",
        public.summary
    );
}

#[test]
fn long_lists_are_cut_in_the_summary_but_kept_in_the_evidence() {
    let mut facts = clean();
    let (a, b) = (names(&facts, 0), names(&facts, 1));
    for i in 0..8 {
        facts.relations.push(RelationReach {
            database: SHARED.into(),
            login: a.login.clone(),
            schema: b.place.clone(),
            name: format!("t{i}"),
            kind: "r".into(),
            owner: b.owner.clone(),
            owner_bulkhead: true,
            privileges: vec!["SELECT".into()],
            via: Via {
                grants: vec!["SELECT to PUBLIC by x".into()],
                ..Via::default()
            },
        });
    }
    let check = the(&classify(&facts), RELATIONS, &a.login).clone();
    assert!(check.summary.ends_with("and 3 more"), "{}", check.summary);
    assert_eq!(check.evidence["findings"].as_array().unwrap().len(), 8);
}
