//! Postgres inspection: what each Bulkhead login role can reach on the server, read from the catalog with the
//! operator's admin and judged against the isolation contract.
//!
//! [`inspect`] only reads. Every database it visits (the shared one, and each `isolation: Database` subject's
//! own) is read inside one `READ ONLY`, `REPEATABLE READ` transaction, so the facts of one database come from
//! one snapshot and nothing can be written by mistake. The reads are a few catalog queries per database, each
//! covering every subject at once: privileges are first narrowed to the pairs of login role and object that an
//! ACL entry (for PUBLIC, the role, or a role it is a member of) or ownership could connect, and only those
//! pairs are confirmed with `has_*_privilege`, so the cost grows with the objects and grants there are, not
//! with their product.
//!
//! Judging is pure (`classify`): rows in, [`Check`]s out, one check per login role and aspect (pass when
//! clean, so the report shows what was checked) and one per hardened object for the server's PUBLIC grants.
//! The check ids:
//!
//! - `postgres.role_attributes`: the login role exists with the attributes provisioning gives it;
//! - `postgres.databases`: the databases it may connect to or create temporary objects in;
//! - `postgres.schemas`: schemas beyond its own where it has USAGE or CREATE;
//! - `postgres.relations`: tables, views and sequences of other subjects it holds any privilege on;
//! - `postgres.large_objects`: large objects of its subject's roles granted to PUBLIC or to other roles;
//! - `postgres.memberships`: roles it is a member of, directly or through others;
//! - `postgres.lock_functions`: the lock-taking catalog functions the hardening revokes, as it can run them;
//! - `postgres.public_grants`: what PUBLIC holds of the server's hardening.
//!
//! Where the hardening could not take a right from PUBLIC because the admin does not act for the role that
//! granted it (an admin that is not a superuser owns neither `postgres`, `template1` nor the catalog), the gap
//! is reported as `warn`, as the operator logs it at connect; the same right left to PUBLIC where the admin
//! could take it is a `fail`.

mod classify;
mod queries;
mod subject;

use bulkhead_crds::v1alpha1::DatabaseIsolation;
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::postgres::connect::{Failure, Server, describe};
use crate::verify::check::Check;

pub use queries::InspectError;
pub use subject::Subject;

pub use classify::{
    DATABASES, LARGE_OBJECTS, LOCK_FUNCTIONS, MEMBERSHIPS, PER_ROLE, PUBLIC_GRANTS, RELATIONS,
    ROLE_ATTRIBUTES, SCHEMAS,
};

/// How many subject databases are read at once.
const PARALLEL_DATABASES: usize = 4;

/// Reads what every subject's login role can reach on the server and judges it; see the module docs for the
/// checks. Connects as the admin (fresh connections, not the operator's pool) and only reads.
pub async fn inspect(server: &Server, subjects: &[Subject]) -> Result<Vec<Check>, InspectError> {
    let shared = server.shared_database().to_owned();
    let scopes = classify::scopes(&shared, subjects);
    let mut client = connect(server, &shared).await?;
    let tx = read_only(&mut client, &shared).await?;
    let reader = queries::Reader::new(&tx, &shared);
    let about = reader.server().await?;
    let plan = queries::Plan::new(&scopes, about.major);
    let existing = reader.databases().await?;
    let subject_databases: Vec<&classify::Scope> = scopes
        .iter()
        .filter(|s| s.subject.isolation == DatabaseIsolation::Database && existing.contains(&s.database))
        .collect();
    let mut hardened: Vec<String> = [shared.as_str(), "postgres", "template1"]
        .into_iter()
        .map(str::to_owned)
        .chain(subject_databases.iter().map(|s| s.database.clone()))
        .filter(|d| existing.contains(d))
        .collect();
    hardened.sort();
    hardened.dedup();

    let mut facts = classify::Facts {
        shared_database: shared.clone(),
        admin_superuser: about.superuser,
        scopes: scopes.clone(),
        databases: existing.clone(),
        roles: reader.roles(&plan).await?,
        memberships: reader.memberships(&plan).await?,
        database_reach: reader.database_reach(&plan).await?,
        inspected: vec![shared.clone()],
        ..classify::Facts::default()
    };
    let schema_logins: Vec<String> = scopes
        .iter()
        .filter(|s| s.subject.isolation == DatabaseIsolation::Schema)
        .map(|s| s.names.login.clone())
        .collect();
    let inside = queries::Inside {
        own_login: None,
        hardened: &hardened,
        statistics_views: true,
        function_logins: &schema_logins,
    };
    facts.absorb(reader.inside(&plan, &inside).await?);
    tx.commit()
        .await
        .map_err(|e| queries::query_error(&shared, "ending the read-only transaction", &e))?;
    drop(client);

    let per_database: Vec<(String, classify::DatabaseFacts)> = futures::stream::iter(subject_databases)
        .map(|scope| inspect_subject_database(server, &plan, scope))
        .buffer_unordered(PARALLEL_DATABASES)
        .try_collect()
        .await?;
    let mut per_database = per_database;
    per_database.sort_by(|a, b| a.0.cmp(&b.0));
    for (database, found) in per_database {
        facts.inspected.push(database);
        facts.absorb(found);
    }
    Ok(classify::classify(&facts))
}

/// The reads inside one `isolation: Database` subject's database.
async fn inspect_subject_database(
    server: &Server,
    plan: &queries::Plan,
    scope: &classify::Scope,
) -> Result<(String, classify::DatabaseFacts), InspectError> {
    let database = scope.database.as_str();
    let mut client = connect(server, database).await?;
    let tx = read_only(&mut client, database).await?;
    let reader = queries::Reader::new(&tx, database);
    let logins = vec![scope.names.login.clone()];
    let inside = queries::Inside {
        own_login: Some(&scope.names.login),
        hardened: &[],
        statistics_views: false,
        function_logins: &logins,
    };
    let found = reader.inside(plan, &inside).await?;
    tx.commit()
        .await
        .map_err(|e| queries::query_error(database, "ending the read-only transaction", &e))?;
    Ok((database.to_owned(), found))
}

async fn connect(server: &Server, database: &str) -> Result<Client, InspectError> {
    server
        .connect(database, None)
        .await
        .map_err(|e| InspectError::Connect {
            database: database.to_owned(),
            failure: Failure::of(&e),
            message: describe(&e),
        })
}

/// A read-only transaction with one snapshot for every read in it. JIT compilation is off inside it: the
/// catalog queries run in milliseconds, and their row estimates over CTEs can price them high enough for the
/// server to spend seconds compiling them.
async fn read_only<'a>(client: &'a mut Client, database: &str) -> Result<Transaction<'a>, InspectError> {
    let what = "starting a read-only transaction";
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| queries::query_error(database, what, &e))?;
    tx.batch_execute("SET LOCAL jit = off")
        .await
        .map_err(|e| queries::query_error(database, what, &e))?;
    Ok(tx)
}
