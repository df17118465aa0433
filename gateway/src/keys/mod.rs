//! Per-issuer verification keys: from a JWKS URL (fetched at start, refreshed on a bounded interval, one
//! rate-limited refetch on an unknown kid, last good keys kept on any error) or from static JWKS/PEM files
//! (polled and reloaded on change). Each issuer's keys are an atomically swapped snapshot; a generation counter
//! moves on every change so that the verified-token cache can flush itself.

pub mod fetch;
pub mod jwk;
pub mod public;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::metrics::Metrics;
use fetch::{FetchError, Fetcher};
use jwk::{BoundKey, KeyDocError, KeyRefusal, KeySet, Skipped, bind_pem, key_set_from_jwks};

/// A PEM public key file with the kid and algorithm it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemKey {
    /// The key id tokens must carry.
    pub kid: String,
    /// The one algorithm the key verifies.
    pub algorithm: Algorithm,
    /// The PEM file.
    pub path: PathBuf,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL (`https://`; `http://` only for loopback tests).
    JwksUrl(String),
    /// A JWKS file, reloaded when it changes.
    JwksFile(PathBuf),
    /// PEM public key files, reloaded when they change.
    Pem(Vec<PemKey>),
}

/// An issuer as the key store sees it.
#[derive(Debug, Clone)]
pub struct IssuerKeysConfig {
    /// The exact `iss` value.
    pub issuer: String,
    /// The issuer's algorithm allow-list.
    pub algorithms: Vec<Algorithm>,
    /// The issuer's key source.
    pub source: KeySource,
}

/// Timing and size limits of the key store.
#[derive(Debug, Clone)]
pub struct KeyStorePolicy {
    /// Interval between JWKS URL refreshes.
    pub refresh: Duration,
    /// Interval before retrying a failed refresh (and between file polls).
    pub retry: Duration,
    /// Least time between two refetches caused by unknown kids, per issuer.
    pub unknown_kid_refetch: Duration,
    /// Most keys accepted in one document.
    pub max_keys: usize,
}

/// Why (re)loading an issuer's keys failed. The previous keys stay in force.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Fetching the JWKS URL failed.
    #[error("fetching: {0}")]
    Fetch(#[from] FetchError),
    /// The document was unusable.
    #[error("key document: {0}")]
    Doc(#[from] KeyDocError),
    /// A configured PEM key was refused by the key rules (or is not a PEM public key).
    #[error("PEM key {kid} ({path}): {refusal}")]
    PemKey {
        /// The kid the key is configured under.
        kid: String,
        /// The file.
        path: PathBuf,
        /// Why.
        refusal: KeyRefusal,
    },
    /// Reading a key file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl LoadError {
    /// A fixed reason string for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Fetch(e) => e.reason(),
            LoadError::Doc(e) => e.reason(),
            LoadError::PemKey { refusal, .. } => refusal.reason(),
            LoadError::Io { .. } => "io",
        }
    }
}

/// A configured key that stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
#[error("issuer {issuer}: {error}")]
pub struct StartKeyError {
    /// The issuer the key is configured for.
    pub issuer: String,
    /// What was wrong with it.
    #[source]
    pub error: LoadError,
}

/// The result of looking a kid up.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The key, and the index of the issuer it belongs to.
    Found {
        /// The issuer's index.
        issuer: usize,
        /// The key.
        key: Arc<BoundKey>,
    },
    /// No such kid; `refetch` names the issuer whose JWKS URL may be refetched once.
    UnknownKid {
        /// The issuer to refetch, if any.
        refetch: Option<usize>,
    },
    /// The named issuer has never had keys loaded.
    Unavailable,
}

struct IssuerKeys {
    config: IssuerKeysConfig,
    keys: ArcSwapOption<KeySet>,
    last_kid_refetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The keys of every configured issuer.
pub struct KeyStore {
    issuers: Vec<IssuerKeys>,
    generation: AtomicU64,
    fetcher: Fetcher,
    policy: KeyStorePolicy,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &i.config.issuer).collect::<Vec<_>>(),
            )
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store with no keys loaded yet.
    pub fn new(
        issuers: Vec<IssuerKeysConfig>,
        fetcher: Fetcher,
        policy: KeyStorePolicy,
        metrics: Arc<Metrics>,
    ) -> KeyStore {
        KeyStore {
            issuers: issuers
                .into_iter()
                .map(|config| IssuerKeys {
                    config,
                    keys: ArcSwapOption::empty(),
                    last_kid_refetch: tokio::sync::Mutex::new(None),
                })
                .collect(),
            generation: AtomicU64::new(0),
            fetcher,
            policy,
            metrics,
        }
    }

    /// The number of issuers.
    pub fn len(&self) -> usize {
        self.issuers.len()
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The `iss` of issuer `index`.
    pub fn issuer(&self, index: usize) -> &str {
        self.issuers
            .get(index)
            .map(|i| i.config.issuer.as_str())
            .unwrap_or("")
    }

    /// Moves whenever any issuer's keys change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether every issuer has keys.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.keys.load().is_some())
    }

    /// Looks `kid` up. When the (still unverified) `iss` names a configured issuer, only that issuer's keys are
    /// searched. Otherwise the kid must belong to exactly one issuer; gate `iss` then refuses the token after
    /// its signature, so that callers without a validly signed token learn nothing about the issuer list.
    pub fn lookup(&self, iss_claim: Option<&str>, kid: &str) -> Lookup {
        let named = iss_claim.and_then(|iss| self.issuers.iter().position(|i| i.config.issuer == iss));
        if let Some(index) = named {
            let issuer = &self.issuers[index];
            let Some(set) = issuer.keys.load_full() else {
                return Lookup::Unavailable;
            };
            return match set.keys.get(kid) {
                Some(key) => Lookup::Found {
                    issuer: index,
                    key: key.clone(),
                },
                None => Lookup::UnknownKid {
                    refetch: matches!(issuer.config.source, KeySource::JwksUrl(_)).then_some(index),
                },
            };
        }
        let mut found = None;
        for (index, issuer) in self.issuers.iter().enumerate() {
            if let Some(key) = issuer.keys.load().as_ref().and_then(|s| s.keys.get(kid).cloned()) {
                if found.is_some() {
                    return Lookup::UnknownKid { refetch: None };
                }
                found = Some(Lookup::Found { issuer: index, key });
            }
        }
        found.unwrap_or(Lookup::UnknownKid { refetch: None })
    }

    /// Refetches issuer `index`'s JWKS because a token named an unknown kid, at most once per
    /// `unknown_kid_refetch` interval. Concurrent callers wait for the one refetch in flight. Returns whether
    /// the keys changed.
    pub async fn refetch_for_unknown_kid(&self, index: usize) -> bool {
        let Some(issuer) = self.issuers.get(index) else {
            return false;
        };
        let generation = self.generation();
        let mut last = issuer.last_kid_refetch.lock().await;
        if self.generation() != generation {
            return true; // another caller's refetch changed the keys while we waited
        }
        if last.is_some_and(|t| t.elapsed() < self.policy.unknown_kid_refetch) {
            self.metrics.jwks_refetch_limited(&issuer.config.issuer);
            return false;
        }
        *last = Some(Instant::now());
        matches!(self.load(index).await, Ok(true))
    }

    /// (Re)loads issuer `index` from its source. On success the keys are swapped in when they changed
    /// (returns whether they did); on error the previous keys stay.
    pub async fn load(&self, index: usize) -> Result<bool, LoadError> {
        let Some(issuer) = self.issuers.get(index) else {
            return Ok(false);
        };
        let name = issuer.config.issuer.as_str();
        let result = self.read_source(&issuer.config).await;
        let (set, skipped) = match result {
            Ok(read) => read,
            Err(err) => {
                self.metrics.jwks_load(name, err.reason());
                warn!(issuer = name, reason = err.reason(), error = %err, "key refresh failed; keeping the last good keys");
                return Err(err);
            }
        };
        self.metrics.jwks_load(name, "ok");
        let unchanged = issuer
            .keys
            .load()
            .as_ref()
            .is_some_and(|old| old.digest == set.digest);
        if unchanged {
            return Ok(false);
        }
        // Reported once per new document, not on every poll of an unchanged one.
        for (kid, refusal) in skipped {
            let kid = kid.as_deref().unwrap_or("");
            let kid = kid.get(..crate::gates::kid::MAX_KID_LEN).unwrap_or(kid);
            warn!(issuer = name, kid, reason = refusal.reason(), "JWK skipped");
            self.metrics.key_skipped(name, refusal.reason());
        }
        let mut kids: Vec<&String> = set.keys.keys().collect();
        kids.sort();
        info!(issuer = name, kids = ?kids, "keys loaded");
        self.metrics.keys_loaded(name, set.keys.len());
        issuer.keys.store(Some(Arc::new(set)));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    async fn read_source(&self, config: &IssuerKeysConfig) -> Result<(KeySet, Vec<Skipped>), LoadError> {
        Ok(match &config.source {
            KeySource::JwksUrl(url) => {
                let bytes = self.fetcher.fetch(url).await?;
                key_set_from_jwks(&bytes, &config.algorithms, self.policy.max_keys)?
            }
            KeySource::JwksFile(path) => {
                let bytes = read(path).await?;
                key_set_from_jwks(&bytes, &config.algorithms, self.policy.max_keys)?
            }
            KeySource::Pem(keys) => {
                let mut set = KeySet::default();
                let mut digest = Sha256::new();
                for pem in keys {
                    let bytes = read(&pem.path).await?;
                    digest.update(pem.kid.as_bytes());
                    digest.update(format!("{:?}", pem.algorithm).as_bytes());
                    digest.update(Sha256::digest(&bytes));
                    let key =
                        bind_pem(&pem.kid, pem.algorithm, &bytes, &config.algorithms).map_err(|refusal| {
                            LoadError::PemKey {
                                kid: pem.kid.clone(),
                                path: pem.path.clone(),
                                refusal,
                            }
                        })?;
                    set.keys.insert(pem.kid.clone(), Arc::new(key));
                }
                set.digest = digest.finalize().into();
                (set, Vec::new())
            }
        })
    }

    /// Loads every issuer's keys once, at start. A configured PEM key that the key rules refuse (or that is no
    /// PEM public key) is a configuration error: it is returned, naming the issuer and the key, and the gateway
    /// does not start. Any other failure (an unreachable JWKS URL, a missing file) leaves its issuer unready
    /// until a refresh succeeds.
    pub async fn load_at_start(&self) -> Result<(), StartKeyError> {
        for index in 0..self.issuers.len() {
            if let Err(error @ LoadError::PemKey { .. }) = self.load(index).await {
                return Err(StartKeyError {
                    issuer: self.issuer(index).to_owned(),
                    error,
                });
            }
        }
        Ok(())
    }

    /// Starts one task per issuer that keeps its keys fresh: JWKS URLs every `refresh` (after a failure, every
    /// `retry`), files every `retry`. The tasks end when the returned handles are aborted.
    pub fn spawn_refresh(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.issuers.len())
            .map(|index| {
                let store = Arc::clone(self);
                tokio::spawn(async move {
                    let is_url = matches!(store.issuers[index].config.source, KeySource::JwksUrl(_));
                    // The first load happened at start; a missing key set is retried at the short interval.
                    let mut ok = store.issuers[index].keys.load().is_some();
                    loop {
                        let wait = if ok && is_url {
                            store.policy.refresh
                        } else {
                            store.policy.retry
                        };
                        tokio::time::sleep(wait).await;
                        ok = store.load(index).await.is_ok();
                    }
                })
            })
            .collect()
    }
}

async fn read(path: &PathBuf) -> Result<Vec<u8>, LoadError> {
    tokio::fs::read(path).await.map_err(|source| LoadError::Io {
        path: path.clone(),
        source,
    })
}
