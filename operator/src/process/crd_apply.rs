//! `bulkhead-operator crds apply`: installs or upgrades Bulkhead's CRDs from the ones built into this binary
//! (Helm installs a chart's `crds/` once and never upgrades them; the chart runs this in a hook Job instead).
//!
//! Per CRD: read the served one; leave it alone when a newer Bulkhead applied it (never downgrade); else
//! server-side apply the built-in one (field manager `bulkhead-crds`, force) with the annotation
//! `bulkhead.dev/operator-version`, and make its `spec` exactly the built-in one, since apply leaves fields that
//! another manager set (an older version installed by Helm, say). Then wait until each is `Established`.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::time::Instant;
use tracing::info;

use crate::process::crd_wait::is_established;

/// The field manager of `crds apply`.
pub const FIELD_MANAGER: &str = "bulkhead-crds";

/// Annotation on each applied CRD: the version of the Bulkhead that applied it.
pub const VERSION_ANNOTATION: &str = "bulkhead.dev/operator-version";

/// This binary's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often the CRDs are looked at while waiting for them to be established.
const POLL: Duration = Duration::from_millis(250);

/// Errors of `crds apply`, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum CrdApplyError {
    /// This binary's own version is not a semantic version (a build problem).
    #[error("this binary's version {0:?} is not a semantic version")]
    BinaryVersion(String),
    /// A served CRD carries a version annotation that is not a semantic version.
    #[error(
        "CRD {name} carries {VERSION_ANNOTATION}={value:?}, which is not a semantic version; \
         remove the annotation to let this binary ({VERSION}) apply it"
    )]
    ServedVersion {
        /// The CRD.
        name: String,
        /// The annotation's value.
        value: String,
    },
    /// A CRD could not be read.
    #[error("reading CRD {name}: {source}")]
    Read {
        /// The CRD.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A CRD could not be applied.
    #[error("applying CRD {name}: {source}")]
    Apply {
        /// The CRD.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Fields another manager left in a CRD's spec could not be removed.
    #[error("setting the spec of CRD {name} to this version's: {source}")]
    Replace {
        /// The CRD.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A CRD's spec could not be turned into a JSON patch (a bug).
    #[error("serializing the spec of CRD {name}: {source}")]
    Serialize {
        /// The CRD.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The deadline passed.
    #[error("timed out after {seconds} s {what}")]
    Timeout {
        /// The deadline, in seconds.
        seconds: u64,
        /// What was still going on.
        what: String,
    },
}

impl CrdApplyError {
    /// A fixed category for logs and exit messages.
    pub fn category(&self) -> &'static str {
        match self {
            CrdApplyError::BinaryVersion(_) | CrdApplyError::ServedVersion { .. } => "crd_version",
            CrdApplyError::Read { .. } => "crd_read",
            CrdApplyError::Apply { .. } => "crd_apply",
            CrdApplyError::Replace { .. } => "crd_replace",
            CrdApplyError::Serialize { .. } => "serialize",
            CrdApplyError::Timeout { .. } => "crd_timeout",
        }
    }
}

/// A semantic version (<https://semver.org>): `major.minor.patch`, an optional pre-release after `-`, and build
/// metadata after `+`, which takes no part in comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    core: [u64; 3],
    pre: Vec<PreRelease>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PreRelease {
    // Numeric identifiers sort before alphanumeric ones; declaration order gives exactly that.
    Numeric(u64),
    Alphanumeric(String),
}

impl Version {
    /// Parses a version (pure); `None` when it is not a semantic version.
    pub fn parse(text: &str) -> Option<Version> {
        let without_build = match text.split_once('+') {
            Some((version, build)) => {
                valid_identifiers(build, false)?;
                version
            }
            None => text,
        };
        let (core, pre) = match without_build.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (without_build, None),
        };
        let mut numbers = core.split('.').map(numeric);
        let core = [numbers.next()??, numbers.next()??, numbers.next()??];
        if numbers.next().is_some() {
            return None;
        }
        let pre = match pre {
            Some(pre) => valid_identifiers(pre, true)?
                .into_iter()
                .map(|id| match numeric(id) {
                    Some(n) => PreRelease::Numeric(n),
                    None => PreRelease::Alphanumeric(id.to_owned()),
                })
                .collect(),
            None => Vec::new(),
        };
        Some(Version { core, pre })
    }
}

/// A numeric identifier: digits without a leading zero.
fn numeric(id: &str) -> Option<u64> {
    let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    if !digits || (id.len() > 1 && id.starts_with('0')) {
        return None;
    }
    id.parse().ok()
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`, none empty (pre-release identifiers: numeric ones without a
/// leading zero).
fn valid_identifiers(text: &str, pre_release: bool) -> Option<Vec<&str>> {
    let ids: Vec<&str> = text.split('.').collect();
    let ok = ids.iter().all(|id| {
        let charset = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let all_digits = id.bytes().all(|b| b.is_ascii_digit());
        charset && !(pre_release && all_digits && numeric(id).is_none())
    });
    ok.then_some(ids)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release comes before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What to do with a served CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Apply this binary's CRD: none is served, or the served one is of this version, an older one, or was
    /// installed without the annotation.
    Apply,
    /// Leave it: a newer Bulkhead applied it.
    Keep {
        /// The served CRD's version.
        served: String,
    },
}

/// Decides from the served CRD's version annotation (pure). Never downgrades.
pub fn decide(name: &str, served: Option<&str>, ours: &str) -> Result<Decision, CrdApplyError> {
    let ours_parsed = Version::parse(ours).ok_or_else(|| CrdApplyError::BinaryVersion(ours.to_owned()))?;
    let Some(served) = served else {
        return Ok(Decision::Apply);
    };
    let served_parsed = Version::parse(served).ok_or_else(|| CrdApplyError::ServedVersion {
        name: name.to_owned(),
        value: served.to_owned(),
    })?;
    Ok(if served_parsed > ours_parsed {
        Decision::Keep {
            served: served.to_owned(),
        }
    } else {
        Decision::Apply
    })
}

/// What `crds apply` did with one CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was not served and was created.
    Created,
    /// It was served and differed; it is this version's now.
    Updated,
    /// It was already this version's.
    Unchanged,
    /// A newer Bulkhead applied it; it was left as it is.
    Kept {
        /// The served CRD's version.
        served: String,
    },
}

/// One CRD and what was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The CRD's name.
    pub name: String,
    /// What was done.
    pub outcome: Outcome,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match &self.outcome {
            Outcome::Created => write!(f, "customresourcedefinition/{name} created ({VERSION})"),
            Outcome::Updated => write!(f, "customresourcedefinition/{name} updated ({VERSION})"),
            Outcome::Unchanged => write!(f, "customresourcedefinition/{name} unchanged ({VERSION})"),
            Outcome::Kept { served } => write!(
                f,
                "customresourcedefinition/{name} left alone: it was applied by Bulkhead {served}, newer than \
                 this binary ({VERSION}); not downgraded"
            ),
        }
    }
}

/// This binary's CRDs, each annotated with its version.
pub fn desired() -> Vec<CustomResourceDefinition> {
    bulkhead_crds::generate::crds()
        .into_iter()
        .map(|mut crd| {
            crd.annotations_mut()
                .insert(VERSION_ANNOTATION.to_owned(), VERSION.to_owned());
            crd
        })
        .collect()
}

/// Applies this binary's CRDs and waits until each is established, all within `timeout`.
pub async fn apply(client: &Client, timeout: Duration) -> Result<Vec<Applied>, CrdApplyError> {
    let deadline = Deadline {
        at: Instant::now() + timeout,
        seconds: timeout.as_secs(),
    };
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut applied = Vec::new();
    for crd in desired() {
        let name = crd.name_any();
        let outcome = apply_one(&api, crd, &deadline).await?;
        info!(crd = %name, ?outcome, "applied");
        applied.push(Applied { name, outcome });
    }
    let names: Vec<&str> = applied.iter().map(|a| a.name.as_str()).collect();
    wait_established(&api, &names, &deadline).await?;
    Ok(applied)
}

/// The deadline of one `crds apply`.
struct Deadline {
    at: Instant,
    seconds: u64,
}

impl Deadline {
    async fn within<T>(
        &self,
        what: impl FnOnce() -> String,
        step: impl Future<Output = Result<T, CrdApplyError>>,
    ) -> Result<T, CrdApplyError> {
        match tokio::time::timeout_at(self.at, step).await {
            Ok(result) => result,
            Err(_) => Err(CrdApplyError::Timeout {
                seconds: self.seconds,
                what: what(),
            }),
        }
    }
}

async fn apply_one(
    api: &Api<CustomResourceDefinition>,
    desired: CustomResourceDefinition,
    deadline: &Deadline,
) -> Result<Outcome, CrdApplyError> {
    let name = desired.name_any();
    let served = deadline
        .within(|| format!("reading CRD {name}"), async {
            api.get_opt(&name).await.map_err(|source| CrdApplyError::Read {
                name: name.clone(),
                source: Box::new(source),
            })
        })
        .await?;
    let served_version = served
        .as_ref()
        .and_then(|crd| crd.annotations().get(VERSION_ANNOTATION))
        .map(String::as_str);
    if let Decision::Keep { served } = decide(&name, served_version, VERSION)? {
        return Ok(Outcome::Kept { served });
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = deadline
        .within(|| format!("applying CRD {name}"), async {
            api.patch(&name, &params, &Patch::Apply(&desired))
                .await
                .map_err(|source| CrdApplyError::Apply {
                    name: name.clone(),
                    source: Box::new(source),
                })
        })
        .await?;
    let Some(served) = served else {
        return Ok(Outcome::Created);
    };
    let replaced = deadline
        .within(
            || format!("setting the spec of CRD {name}"),
            exact_spec(api, &written, &desired),
        )
        .await?;
    if replaced || written.resource_version() != served.resource_version() {
        Ok(Outcome::Updated)
    } else {
        Ok(Outcome::Unchanged)
    }
}

/// Makes the CRD's spec exactly the desired one when fields of another manager are left in it. A dry run of
/// the replacement shows what the API server would store (with its defaults); only when that differs from
/// what is served is it written. Returns whether it was.
async fn exact_spec(
    api: &Api<CustomResourceDefinition>,
    written: &CustomResourceDefinition,
    desired: &CustomResourceDefinition,
) -> Result<bool, CrdApplyError> {
    let name = desired.name_any();
    let patch = replace_spec_patch(written, desired).map_err(|source| CrdApplyError::Serialize {
        name: name.clone(),
        source,
    })?;
    let replace = |dry_run: bool| {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            dry_run,
            ..PatchParams::default()
        };
        let patch = patch.clone();
        let name = name.clone();
        async move {
            api.patch(&name, &params, &Patch::<()>::Json(patch))
                .await
                .map_err(|source| CrdApplyError::Replace {
                    name,
                    source: Box::new(source),
                })
        }
    };
    let would_be = replace(true).await?;
    if would_be.spec == written.spec {
        return Ok(false);
    }
    replace(false).await?;
    Ok(true)
}

/// A JSON patch that replaces the spec of `served` with the desired one, and fails if `served` has changed
/// meanwhile (pure).
pub fn replace_spec_patch(
    served: &CustomResourceDefinition,
    desired: &CustomResourceDefinition,
) -> Result<json_patch::Patch, serde_json::Error> {
    serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": served.resource_version()},
        {"op": "replace", "path": "/spec", "value": desired.spec},
    ]))
}

async fn wait_established(
    api: &Api<CustomResourceDefinition>,
    names: &[&str],
    deadline: &Deadline,
) -> Result<(), CrdApplyError> {
    let mut waiting: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut why = Vec::new();
    let polling = async {
        loop {
            why.clear();
            let mut still = Vec::new();
            for name in &waiting {
                let crd = api.get_opt(name).await.map_err(|source| CrdApplyError::Read {
                    name: name.clone(),
                    source: Box::new(source),
                })?;
                match crd {
                    Some(crd) if is_established(&crd) => {}
                    crd => {
                        why.push(not_established(name, crd.as_ref()));
                        still.push(name.clone());
                    }
                }
            }
            waiting = still;
            if waiting.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let result = tokio::time::timeout_at(deadline.at, polling).await;
    match result {
        Ok(result) => result,
        Err(_) => Err(CrdApplyError::Timeout {
            seconds: deadline.seconds,
            what: format!("waiting for CRDs to be established: {}", why.join("; ")),
        }),
    }
}

/// Why a CRD is not established yet, from its conditions (pure).
pub fn not_established(name: &str, crd: Option<&CustomResourceDefinition>) -> String {
    let Some(crd) = crd else {
        return format!("{name} is not served");
    };
    let conditions = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.status != "True")
                .map(|c| {
                    let reason = c.reason.as_deref().unwrap_or_default();
                    let message = c.message.as_deref().unwrap_or_default();
                    format!("{}={} {reason}: {message}", c.type_, c.status)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if conditions.is_empty() {
        format!("{name} is not established yet")
    } else {
        format!("{name}: {}", conditions.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinitionCondition, CustomResourceDefinitionStatus,
    };

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn versions_compare_by_semver_precedence() {
        // The example chain of semver.org, item 11, in ascending order.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "1.10.0",
            "2.0.0",
            "10.0.0",
        ];
        for pair in chain.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.2.3+build.5"), v("1.2.3"));
        assert_eq!(v("0.1.0").cmp(&v("0.1.0")), Ordering::Equal);
        assert!(v("0.10.0") > v("0.9.9"), "numbers, not text");
    }

    #[test]
    fn only_semantic_versions_parse() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "v1.2.3",
            "01.2.3",
            "1.02.3",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3+",
            "1.2.3-ä",
            "latest",
            " 1.2.3",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
        for good in ["0.0.0", "1.2.3-0", "1.2.3-x-y.7", "1.2.3+001", "99.0.0"] {
            assert!(Version::parse(good).is_some(), "{good:?}");
        }
        assert!(Version::parse(VERSION).is_some(), "this crate's version");
    }

    #[test]
    fn a_newer_crd_is_kept_and_anything_else_is_applied() {
        let name = "tenants.bulkhead.dev";
        assert_eq!(decide(name, None, "0.2.0").unwrap(), Decision::Apply);
        assert_eq!(decide(name, Some("0.2.0"), "0.2.0").unwrap(), Decision::Apply);
        assert_eq!(decide(name, Some("0.1.9"), "0.2.0").unwrap(), Decision::Apply);
        assert_eq!(
            decide(name, Some("0.2.0-rc.1"), "0.2.0").unwrap(),
            Decision::Apply
        );
        assert_eq!(
            decide(name, Some("99.0.0"), "0.2.0").unwrap(),
            Decision::Keep {
                served: "99.0.0".into()
            }
        );
        assert_eq!(
            decide(name, Some("0.2.0"), "0.2.0-rc.1").unwrap(),
            Decision::Keep {
                served: "0.2.0".into()
            }
        );
        let err = decide(name, Some("garbage"), "0.2.0").unwrap_err();
        assert_eq!(err.category(), "crd_version");
        assert!(
            err.to_string().contains("garbage") && err.to_string().contains(name),
            "{err}"
        );
        assert_eq!(
            decide(name, None, "not-a-version").unwrap_err().category(),
            "crd_version"
        );
    }

    #[test]
    fn the_built_in_crds_carry_this_version_and_nothing_else_differs() {
        let annotated = desired();
        let plain = bulkhead_crds::generate::crds();
        assert_eq!(annotated.len(), 2);
        for (mut a, p) in annotated.into_iter().zip(plain) {
            assert_eq!(
                a.annotations().get(VERSION_ANNOTATION).map(String::as_str),
                Some(VERSION)
            );
            a.annotations_mut().remove(VERSION_ANNOTATION);
            if a.annotations().is_empty() {
                a.metadata.annotations = p.metadata.annotations.clone();
            }
            assert_eq!(a, p);
        }
    }

    #[test]
    fn one_line_per_crd_says_what_happened() {
        let line = |outcome| {
            Applied {
                name: "tenants.bulkhead.dev".into(),
                outcome,
            }
            .to_string()
        };
        assert_eq!(
            line(Outcome::Created),
            format!("customresourcedefinition/tenants.bulkhead.dev created ({VERSION})")
        );
        assert!(line(Outcome::Updated).ends_with(&format!("updated ({VERSION})")));
        assert!(line(Outcome::Unchanged).ends_with(&format!("unchanged ({VERSION})")));
        let kept = line(Outcome::Kept {
            served: "99.0.0".into(),
        });
        assert!(
            kept.contains("left alone") && kept.contains("99.0.0") && kept.contains("not downgraded"),
            "{kept}"
        );
        assert!(!kept.contains('\n'));
    }

    #[test]
    fn the_spec_patch_replaces_the_whole_spec_only_if_nothing_changed_meanwhile() {
        let desired = desired().remove(0);
        let mut served = desired.clone();
        served.metadata.resource_version = Some("42".into());
        served.spec.names.short_names = Some(vec!["old".into()]);
        let patch = serde_json::to_value(replace_spec_patch(&served, &desired).unwrap()).unwrap();
        assert_eq!(patch[0]["op"], "test");
        assert_eq!(patch[0]["path"], "/metadata/resourceVersion");
        assert_eq!(patch[0]["value"], "42");
        assert_eq!(patch[1]["op"], "replace");
        assert_eq!(patch[1]["path"], "/spec");
        assert_eq!(patch[1]["value"], serde_json::to_value(&desired.spec).unwrap());
    }

    #[test]
    fn a_crd_not_established_says_why() {
        assert_eq!(
            not_established("tenants.bulkhead.dev", None),
            "tenants.bulkhead.dev is not served"
        );
        let mut crd = desired().remove(0);
        assert_eq!(
            not_established("tenants.bulkhead.dev", Some(&crd)),
            "tenants.bulkhead.dev is not established yet"
        );
        crd.status = Some(CustomResourceDefinitionStatus {
            conditions: Some(vec![
                CustomResourceDefinitionCondition {
                    type_: "NamesAccepted".into(),
                    status: "False".into(),
                    reason: Some("MultipleNamesNotAllowed".into()),
                    message: Some("\"tnt\" is already in use".into()),
                    ..CustomResourceDefinitionCondition::default()
                },
                CustomResourceDefinitionCondition {
                    type_: "Established".into(),
                    status: "False".into(),
                    reason: Some("NotAccepted".into()),
                    message: Some("not all names are accepted".into()),
                    ..CustomResourceDefinitionCondition::default()
                },
            ]),
            ..CustomResourceDefinitionStatus::default()
        });
        assert!(!is_established(&crd));
        let why = not_established("tenants.bulkhead.dev", Some(&crd));
        assert!(
            why.contains("NamesAccepted=False MultipleNamesNotAllowed") && why.contains("Established=False"),
            "{why}"
        );
    }
}
