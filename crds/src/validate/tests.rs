use super::cases::{self, Case, valid_customer, valid_stack, valid_tenant};
use super::*;
use crate::rules::text;
use crate::v1alpha1::{StackSpec, TenantSpec};

fn refused(case: &Case) -> Vec<String> {
    match case.validate() {
        Ok(()) => vec![],
        Err(e) => e.0.into_iter().map(|e| e.field).collect(),
    }
}

#[test]
fn every_case_is_refused_on_exactly_its_fields() {
    let all = cases::all();
    assert!(all.len() > 80, "{} cases", all.len());
    let mut wrong = vec![];
    for case in &all {
        let fields = refused(case);
        if fields != case.refused {
            wrong.push(format!(
                "{}: refused {fields:?}, expected {:?}",
                case.what, case.refused
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_cases_cover_valid_and_refused_specs_of_both_kinds_and_changes() {
    let all = cases::all();
    assert!(all.iter().any(|c| c.refused.is_empty()));
    assert!(all.iter().any(|c| !c.refused.is_empty()));
    assert!(
        all.iter()
            .any(|c| c.plural() == "customers" && !c.refused.is_empty())
    );
    assert!(all.iter().any(|c| c.before.is_some() && !c.refused.is_empty()));
    assert!(all.iter().any(|c| c.before.is_some() && c.refused.is_empty()));
}

#[test]
fn every_refusal_is_worded_from_the_shared_texts() {
    for case in cases::all() {
        let Err(errors) = case.validate() else { continue };
        for error in errors.0 {
            assert!(
                text::ALL.iter().any(|t| error.message.contains(t)),
                "{}: {error}",
                case.what
            );
        }
    }
}

#[test]
fn the_valid_specs_pass_also_against_their_own_identity() {
    let identity = tenant_identity(&valid_tenant());
    assert_eq!(tenant("acme", &valid_tenant(), Some(&identity)), Ok(()));
    let identity = customer_identity(&valid_customer());
    assert_eq!(customer("client-1", &valid_customer(), Some(&identity)), Ok(()));
}

#[test]
fn hostile_values_are_shown_escaped_and_cut_short() {
    let err = tenant(
        "acme",
        &TenantSpec {
            org_id: format!("x\n{}", "y".repeat(500)),
            ..valid_tenant()
        },
        None,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("spec.orgId: \"x\\ny"), "{message}");
    assert!(message.len() < 300, "{message}");
}

#[test]
fn port_message_says_why() {
    let err = tenant(
        "acme",
        &TenantSpec {
            stack: StackSpec {
                port: 80,
                ..valid_stack()
            },
            ..valid_tenant()
        },
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.stack.port: 80 is out of range: must be 1024 to 65535"),
        "{err}"
    );
}

#[test]
fn egress_messages_name_the_danger_and_the_network_meant() {
    let mut spec = valid_tenant();
    spec.network.allow_egress[0].cidr = "0.0.0.0/0".into();
    let message = tenant("acme", &spec, None).unwrap_err().to_string();
    assert!(
        message.contains("every address, including other tenants' pods"),
        "{message}"
    );
    spec.network.allow_egress[0].cidr = "10.1.2.3/24".into();
    let message = tenant("acme", &spec, None).unwrap_err().to_string();
    assert!(message.contains("did you mean 10.1.2.0/24?"), "{message}");
}

#[test]
fn an_identity_change_names_both_values() {
    let accepted = tenant_identity(&valid_tenant());
    let mut changed = valid_tenant();
    changed.org_id = "org_other".into();
    let err = tenant("acme", &changed, Some(&accepted)).unwrap_err();
    assert!(
        err.to_string().contains(
            "is immutable once set; delete and recreate the resource to change it (it was \"org_2aXkQ9\", now \"org_other\")"
        ),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = valid_tenant();
    spec.org_id = String::new();
    spec.stack.port = 0;
    spec.quota.pods = Some(-3);
    let err = tenant("Bad", &spec, None).unwrap_err();
    assert_eq!(err.to_string().matches("; ").count(), 3);
}
