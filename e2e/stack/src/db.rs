//! The database checks: what a stack's `DATABASE_URL` lets it do in its own schema, and what it is refused
//! in another tenant's schema or database. One JSON line per check; refusals carry the server's SQLSTATE.
//!
//! The connection URL and its password are never printed: every message that goes out is cleaned of the
//! password (decoded and as written in the URL).

use std::fmt;
use std::str::FromStr as _;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::{Client, Config, NoTls};

use crate::redact::Redactor;

/// The table the checks create and read.
pub const TABLE: &str = "bulkhead_probe";
/// The table [`Check::OtherSchema`] tries to create in the other schema, in a transaction that is always rolled
/// back.
pub const INTRUSION_TABLE: &str = "bulkhead_probe_intrusion";
/// The `application_name` of the checks' sessions, unless the URL sets one.
const APPLICATION_NAME: &str = "bulkhead-stack";
/// SQLSTATE `unique_violation`: two sessions raced to create the same table.
const UNIQUE_VIOLATION: &str = "23505";

/// A database to connect to, from a `postgres://` (or `postgresql://`, or `key=value`) connection string.
#[derive(Clone)]
pub struct Database {
    config: Config,
    redactor: Redactor,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Parses a connection string. The error never contains the password.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let mut redactor = Redactor::default();
        if let Some(password) = url_password(url) {
            redactor.add(password);
        }
        let config = Config::from_str(url).map_err(|err| {
            redactor
                .text(&format!("not a valid PostgreSQL connection string: {err}"))
                .into_owned()
        })?;
        if let Some(password) = config.get_password() {
            redactor.add(String::from_utf8_lossy(password));
        }
        Ok(Self { config, redactor })
    }

    /// The same server and credentials, another database.
    fn with_dbname(&self, database: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(database);
        other
    }

    async fn connect(&self, timeout: Duration) -> Result<Client, SqlError> {
        let mut config = self.config.clone();
        config.connect_timeout(timeout);
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let (client, connection) = within(timeout, config.connect(NoTls))
            .await
            .map_err(|err| err.redacted(&self.redactor))?;
        tokio::spawn(async move {
            // The session ends when the client is dropped; an error here has already failed a statement.
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// The password of a `scheme://user:password@host/…` URL as written (percent-encoded), if any.
fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    Some(password)
}

/// `name` as a quoted SQL identifier: in double quotes, with double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Which checks to run.
#[derive(Debug, Clone, Default)]
pub struct DbOptions {
    /// The budget for each connection and each statement.
    pub timeout: Duration,
    /// Create, fill and count [`TABLE`] in the login's own schema.
    pub own: bool,
    /// Schemas (of the same database) that should be out of reach.
    pub other_schemas: Vec<String>,
    /// Databases (of the same server) that should be out of reach.
    pub other_databases: Vec<String>,
}

/// How a statement or a login failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlError {
    /// The server's SQLSTATE (`42501` for insufficient privilege); `None` when the server gave none (network
    /// failure, timeout).
    pub sqlstate: Option<String>,
    pub message: String,
}

impl SqlError {
    fn from_postgres(err: &tokio_postgres::Error) -> Self {
        Self {
            sqlstate: err.code().map(|code| code.code().to_owned()),
            message: err
                .as_db_error()
                .map_or_else(|| err.to_string(), |db| db.message().to_owned()),
        }
    }

    fn redacted(mut self, redactor: &Redactor) -> Self {
        redactor.string(&mut self.message);
        self
    }
}

async fn within<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, SqlError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(SqlError::from_postgres(&err)),
        Err(_) => Err(SqlError {
            sqlstate: None,
            message: format!("no answer within {} ms", timeout.as_millis()),
        }),
    }
}

/// One statement's result in a [`Check::OtherSchema`] line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Attempt {
    fn of<T>(result: Result<T, SqlError>) -> Self {
        match result {
            Ok(_) => Self {
                ok: true,
                sqlstate: None,
                message: None,
            },
            Err(err) => Self {
                ok: false,
                sqlstate: err.sqlstate,
                message: Some(err.message),
            },
        }
    }
}

/// Where a check stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Logging in.
    Connect,
    /// Asking for the session's schema, user and database.
    Inspect,
    /// `CREATE TABLE IF NOT EXISTS`.
    Create,
    /// `INSERT`.
    Insert,
    /// `SELECT count(*)`.
    Count,
}

/// One line of `bulkhead-stack db`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum Check {
    /// `--own`: the login's own schema works.
    Own {
        ok: bool,
        /// `current_schema()`: where unqualified names go (`null` when no schema of the search_path exists).
        #[serde(skip_serializing_if = "Option::is_none")]
        schema: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        database: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The rows in the table after the insert.
        #[serde(skip_serializing_if = "Option::is_none")]
        rows: Option<i64>,
        /// On failure: the step that failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<Step>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sqlstate: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// `--other-schema`: reading and creating in another schema. `ok` is true when either succeeded;
    /// `sqlstate` and `message` are the select's refusal (else the create's).
    OtherSchema {
        schema: String,
        ok: bool,
        /// `connect` when the login itself failed (then there is no `select` or `create`).
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<Step>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sqlstate: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        select: Option<Attempt>,
        #[serde(skip_serializing_if = "Option::is_none")]
        create: Option<Attempt>,
    },
    /// `--other-database`: logging in to another database with the same credentials.
    OtherDatabase {
        database: String,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        sqlstate: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

impl Check {
    fn own_failed(step: Step, err: SqlError, schema: Option<String>) -> Self {
        Self::Own {
            ok: false,
            schema,
            database: None,
            user: None,
            rows: None,
            step: Some(step),
            sqlstate: err.sqlstate,
            message: Some(err.message),
        }
    }

    /// The check as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!(r#"{{"check":"error","ok":false,"message":"cannot encode the check: {err}"}}"#)
        })
    }
}

/// Every check's line, and whether the login with the URL as given failed (so `--own` and `--other-schema`
/// could not run).
#[derive(Debug, Clone)]
pub struct Run {
    pub checks: Vec<Check>,
    pub login_failed: bool,
}

/// Runs the checks in the order `--own`, each `--other-schema`, each `--other-database`.
pub async fn run(database: &Database, options: &DbOptions) -> Run {
    let timeout = options.timeout;
    let redactor = &database.redactor;
    let mut checks = Vec::new();
    let mut login_failed = false;
    if options.own || !options.other_schemas.is_empty() {
        match database.connect(timeout).await {
            Err(err) => {
                login_failed = true;
                if options.own {
                    checks.push(Check::own_failed(Step::Connect, err.clone(), None));
                }
                for schema in &options.other_schemas {
                    checks.push(Check::OtherSchema {
                        schema: schema.clone(),
                        ok: false,
                        step: Some(Step::Connect),
                        sqlstate: err.sqlstate.clone(),
                        message: Some(err.message.clone()),
                        select: None,
                        create: None,
                    });
                }
            }
            Ok(mut client) => {
                if options.own {
                    checks.push(own(&client, timeout, redactor).await);
                }
                for schema in &options.other_schemas {
                    checks.push(other_schema(&mut client, schema, timeout, redactor).await);
                }
            }
        }
    }
    for name in &options.other_databases {
        checks.push(match database.with_dbname(name).connect(timeout).await {
            Ok(_client) => Check::OtherDatabase {
                database: name.clone(),
                ok: true,
                sqlstate: None,
                message: None,
            },
            Err(err) => Check::OtherDatabase {
                database: name.clone(),
                ok: false,
                sqlstate: err.sqlstate,
                message: Some(err.message),
            },
        });
    }
    Run { checks, login_failed }
}

async fn own(client: &Client, timeout: Duration, redactor: &Redactor) -> Check {
    let fail = |step, err: SqlError, schema| Check::own_failed(step, err.redacted(redactor), schema);
    let inspect = "SELECT current_schema()::text, current_user::text, current_database()::text";
    let row = match within(timeout, client.query_one(inspect, &[])).await {
        Ok(row) => row,
        Err(err) => return fail(Step::Inspect, err, None),
    };
    let (schema, user, database): (Option<String>, Option<String>, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    // Without a schema, the unqualified CREATE fails with the server's own explanation (3F000).
    let table = match &schema {
        Some(schema) => format!("{}.{TABLE}", quote_ident(schema)),
        None => TABLE.to_owned(),
    };
    let create = format!("CREATE TABLE IF NOT EXISTS {table} (id int)");
    let mut created = within(timeout, client.batch_execute(&create)).await;
    if matches!(&created, Err(err) if err.sqlstate.as_deref() == Some(UNIQUE_VIOLATION)) {
        // Another pod created it at the same moment; now it exists.
        created = within(timeout, client.batch_execute(&create)).await;
    }
    if let Err(err) = created {
        return fail(Step::Create, err, schema);
    }
    let insert = format!("INSERT INTO {table} (id) VALUES (1)");
    if let Err(err) = within(timeout, client.execute(&insert, &[])).await {
        return fail(Step::Insert, err, schema);
    }
    let count = format!("SELECT count(*) FROM {table}");
    let rows: i64 = match within(timeout, client.query_one(&count, &[])).await {
        Ok(row) => row.get(0),
        Err(err) => return fail(Step::Count, err, schema),
    };
    Check::Own {
        ok: true,
        schema,
        database,
        user,
        rows: Some(rows),
        step: None,
        sqlstate: None,
        message: None,
    }
}

async fn other_schema(client: &mut Client, schema: &str, timeout: Duration, redactor: &Redactor) -> Check {
    let quoted = quote_ident(schema);
    let select = format!("SELECT count(*) FROM {quoted}.{TABLE}");
    let select = Attempt::of(
        within(timeout, client.query_one(&select, &[]))
            .await
            .map_err(|err| err.redacted(redactor)),
    );
    let create = format!("CREATE TABLE {quoted}.{INTRUSION_TABLE} (id int)");
    let create = Attempt::of(match within(timeout, client.transaction()).await {
        Err(err) => Err(err.redacted(redactor)),
        Ok(transaction) => {
            let created = within(timeout, transaction.batch_execute(&create))
                .await
                .map_err(|err| err.redacted(redactor));
            // Whatever happened, nothing stays behind in the other schema.
            let _ = within(timeout, transaction.rollback()).await;
            created
        }
    });
    let refusal = if select.ok { &create } else { &select };
    Check::OtherSchema {
        schema: schema.to_owned(),
        ok: select.ok || create.ok,
        step: None,
        sqlstate: refusal.sqlstate.clone(),
        message: refusal.message.clone(),
        select: Some(select),
        create: Some(create),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_quotes_doubled() {
        assert_eq!(quote_ident("bk_acme"), r#""bk_acme""#);
        assert_eq!(
            quote_ident(r#"a"; DROP TABLE x; --"#),
            r#""a""; DROP TABLE x; --""#
        );
    }

    #[test]
    fn the_password_is_found_in_the_url_as_written() {
        assert_eq!(
            url_password("postgresql://u:p%40ss@db:5432/app?sslmode=require"),
            Some("p%40ss")
        );
        assert_eq!(url_password("postgres://u:pw@[::1]:5432/app"), Some("pw"));
        assert_eq!(url_password("postgres://u@db/app"), None);
        assert_eq!(url_password("postgres://db/app"), None);
        assert_eq!(url_password("host=db user=u"), None);
    }

    #[test]
    fn parse_errors_never_show_the_password() {
        let err = Database::from_url("postgres://u:SuperSecret1@db:notaport/app").unwrap_err();
        assert!(!err.contains("SuperSecret1"), "{err}");
        assert!(err.contains("not a valid PostgreSQL connection string"), "{err}");
        let db = Database::from_url("postgresql://bk_acme:S%2Fcret42@db.example:5432/app").unwrap();
        assert_eq!(
            db.redactor.text("x S/cret42 S%2Fcret42 y"),
            "x <redacted> <redacted> y"
        );
        assert!(!format!("{db:?}").contains("cret42"));
        assert_eq!(db.with_dbname("other").config.get_dbname(), Some("other"));
    }

    #[test]
    fn the_lines_are_tagged_by_check() {
        let own = Check::Own {
            ok: true,
            schema: Some("bk_acme".into()),
            database: Some("app".into()),
            user: Some("bk_acme_login".into()),
            rows: Some(2),
            step: None,
            sqlstate: None,
            message: None,
        };
        assert_eq!(
            own.to_line(),
            r#"{"check":"own","ok":true,"schema":"bk_acme","database":"app","user":"bk_acme_login","rows":2}"#
        );
        let refused = Attempt {
            ok: false,
            sqlstate: Some("42501".into()),
            message: Some("permission denied for schema bk_other".into()),
        };
        let other = Check::OtherSchema {
            schema: "bk_other".into(),
            ok: false,
            step: None,
            sqlstate: refused.sqlstate.clone(),
            message: refused.message.clone(),
            select: Some(refused.clone()),
            create: Some(refused),
        };
        let value: serde_json::Value = serde_json::from_str(&other.to_line()).unwrap();
        assert_eq!(value["check"], "other-schema");
        assert_eq!(value["sqlstate"], "42501");
        assert_eq!(value["select"]["ok"], false);
        assert_eq!(value["create"]["sqlstate"], "42501");
        let database = Check::OtherDatabase {
            database: "bk_other".into(),
            ok: true,
            sqlstate: None,
            message: None,
        };
        assert_eq!(
            database.to_line(),
            r#"{"check":"other-database","database":"bk_other","ok":true}"#
        );
    }
}
