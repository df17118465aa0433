//! The namespace's ResourceQuota and LimitRange.

use std::collections::BTreeMap;

use bulkhead_crds::quantity;
use bulkhead_crds::v1alpha1::{DEFAULT_QUOTA_CPU, DEFAULT_QUOTA_MEMORY, DEFAULT_QUOTA_PODS, QuotaSpec};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::subject::{LIMITS, QUOTA, Subject};

/// The quota's CPU, memory and pods, with defaults applied.
pub fn quota_values(quota: &QuotaSpec) -> (String, String, i32) {
    (
        quota
            .cpu
            .as_ref()
            .map_or(DEFAULT_QUOTA_CPU, |q| q.as_str())
            .to_owned(),
        quota
            .memory
            .as_ref()
            .map_or(DEFAULT_QUOTA_MEMORY, |q| q.as_str())
            .to_owned(),
        quota.pods.unwrap_or(DEFAULT_QUOTA_PODS),
    )
}

/// The namespace's ResourceQuota.
pub fn resource_quota(subject: &Subject<'_>) -> ResourceQuota {
    let (cpu, memory, pods) = quota_values(subject.quota);
    let q = |s: &str| Quantity(s.to_owned());
    ResourceQuota {
        metadata: subject.meta(QUOTA),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([
                ("requests.cpu".to_owned(), q(&cpu)),
                ("limits.cpu".to_owned(), q(&cpu)),
                ("requests.memory".to_owned(), q(&memory)),
                ("limits.memory".to_owned(), q(&memory)),
                ("pods".to_owned(), q(&pods.to_string())),
                // Only the gateway may expose a stack: no LoadBalancer or NodePort services.
                ("services.loadbalancers".to_owned(), q("0")),
                ("services.nodeports".to_owned(), q("0")),
            ])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// The smaller of a default and the quota, so defaulted containers always fit.
fn capped(default: &str, quota: &str) -> String {
    match (quantity::parse_milli(default), quantity::parse_milli(quota)) {
        (Ok(d), Ok(q)) if q < d => quota.to_owned(),
        _ => default.to_owned(),
    }
}

/// Default and maximum container resources, within the quota.
pub fn limit_range(subject: &Subject<'_>) -> LimitRange {
    let (cpu, memory, _) = quota_values(subject.quota);
    let pair = |c: String, m: String| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(c)),
            ("memory".to_owned(), Quantity(m)),
        ])
    };
    LimitRange {
        metadata: subject.meta(LIMITS),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(pair(capped("500m", &cpu), capped("512Mi", &memory))),
                default_request: Some(pair(capped("100m", &cpu), capped("128Mi", &memory))),
                ..LimitRangeItem::default()
            }],
        }),
    }
}
