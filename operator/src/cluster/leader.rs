//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and only one reconciles.
//!
//! The holder renews the lease every `retry` interval; a replica takes over once the holder has not renewed for
//! `lease_duration`. A holder that cannot renew for `renew_deadline` (shorter than the lease duration) gives up
//! first, so two replicas never reconcile at once. On a clean shutdown the holder releases the lease, and a
//! standby takes over at its next attempt.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

/// Timing and identity of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps leading while renewals fail.
    pub renew_deadline: Duration,
    /// How often to renew or try to acquire.
    pub retry: Duration,
}

impl LeaseConfig {
    /// The defaults client-go uses: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.to_owned(),
            name: "bulkhead-operator".to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What one look at the lease decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Renew our own lease.
    Renew,
    /// Take over a free or expired lease.
    Acquire,
    /// Someone else holds a valid lease.
    Wait,
}

/// Decides what to do with a lease (pure).
pub fn decide(spec: &LeaseSpec, identity: &str, now: Timestamp, default_duration: Duration) -> Decision {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = spec.lease_duration_seconds.map_or(default_duration, |s| {
        Duration::from_secs(u64::try_from(s).unwrap_or(0))
    });
    let expired = match &spec.renew_time {
        Some(MicroTime(renewed)) => {
            let until =
                renewed.checked_add(SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX));
            until.map_or(true, |until| until < now)
        }
        None => true,
    };
    if expired {
        Decision::Acquire
    } else {
        Decision::Wait
    }
}

/// One replica's view of the election.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl Elector {
    /// An elector for `config`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Tries to acquire or renew the lease once. `Ok(true)` means this replica leads now.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        match decide(&spec, &self.config.identity, now, self.config.lease_duration) {
            Decision::Wait => return Ok(false),
            Decision::Renew => {}
            Decision::Acquire => {
                spec.holder_identity = Some(self.config.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        lease.spec = Some(spec);
        // The resourceVersion in `lease` makes this fail if another replica wrote first.
        conflict_is_false(
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await,
        )
    }

    /// Gives the lease up if this replica holds it, so a standby can take over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

fn conflict_is_false<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: Option<i64>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: renewed.map(|s| MicroTime(Timestamp::from_second(s).unwrap())),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn holder_renews_others_wait_until_expiry() {
        let now = Timestamp::from_second(1000).unwrap();
        let d = Duration::from_secs(15);
        assert_eq!(decide(&spec(Some("a"), Some(995)), "a", now, d), Decision::Renew);
        assert_eq!(decide(&spec(Some("a"), Some(995)), "b", now, d), Decision::Wait);
        assert_eq!(
            decide(&spec(Some("a"), Some(984)), "b", now, d),
            Decision::Acquire
        );
        assert_eq!(decide(&spec(None, Some(999)), "b", now, d), Decision::Acquire);
        assert_eq!(decide(&spec(Some("a"), None), "b", now, d), Decision::Acquire);
    }
}
