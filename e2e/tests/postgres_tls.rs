//! The operator's connection to PostgreSQL over TLS, against a real server presenting a certificate from a
//! throwaway CA: verified with the admin Secret's `ca.crt`, refused without it, plain only when the DSN says
//! `sslmode=disable`. The operator logs in as its admin of `BULKHEAD_PG_ADMIN`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use bulkhead_e2e::postgres::Postgres;
use bulkhead_operator::postgres::connect::{Failure, Server};

struct Pki {
    ca_pem: String,
    other_ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let issuer = ca("bulkhead-test-db-ca");
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: issuer.pem(),
        other_ca_pem: ca("someone-else").pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

async fn uses_tls(server: &Server) -> bool {
    let admin = server.admin().await.unwrap();
    admin
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_and_verified_when_the_dsn_asks_for_it() {
    bulkhead_e2e::init_test_logging();
    let pki = pki();
    let pg = Postgres::start_with_tls(&pki.cert_pem, &pki.key_pem)
        .await
        .unwrap();
    let (user, password) = pg.operator_admin().await.unwrap();
    let dsn = |mode: &str| format!("{}?sslmode={mode}", pg.dsn(&user, &password, "postgres"));

    // The right CA: TLS, verified.
    let server = Server::new(&dsn("require"), Some(pki.ca_pem.as_bytes())).unwrap();
    assert!(uses_tls(&server).await, "the session is encrypted");
    // tokio-postgres' default (prefer) also goes through rustls when the server offers TLS.
    let server = Server::new(&dsn("prefer"), Some(pki.ca_pem.as_bytes())).unwrap();
    assert!(uses_tls(&server).await);

    // No CA or the wrong one: refused (never silently unverified), and classified as unreachable.
    for ca in [None, Some(pki.other_ca_pem.as_bytes())] {
        let server = Server::new(&dsn("require"), ca).unwrap();
        let err = server.admin().await.unwrap_err();
        assert_eq!(err.failure(), Failure::Unreachable, "{err}");
        let text = err.to_string();
        assert!(text.to_lowercase().contains("certificate"), "{text}");
        assert!(!text.contains(&password), "{text}");
    }

    // sslmode=disable: plain, as asked.
    let server = Server::new(&dsn("disable"), None).unwrap();
    assert!(!uses_tls(&server).await);
}
