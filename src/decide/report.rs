//! How an attachment's grants stand after a reconcile, for status and conditions: one
//! `GrantStatus` per wanted grant (and per principal that could not be resolved), the READY
//! count, and the one outcome Ready reports — all grants in place, or the most serious failure.

use crate::crd::{GrantStatus, Ownership};
use crate::decide::failure::{ErrorClass, Failure};
use crate::decide::reasons;
use crate::model::PrincipalType;
use crate::model::grant::Grant;

/// What happened to one wanted grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantReport {
    pub grant: Grant,
    pub source: &'static str,
    /// `spec.repositories` as written, for a scoped grant.
    pub repositories: Vec<String>,
    pub state: Result<(String, Ownership), Failure>,
}

/// A principal that could not be resolved (no grant can be planned for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub source: &'static str,
    pub failure: Failure,
}

pub fn grant_statuses(reports: &[GrantReport], unresolved: &[Unresolved]) -> Vec<GrantStatus> {
    let mut statuses: Vec<GrantStatus> = reports
        .iter()
        .map(|report| {
            let (assignment_id, ownership, reason, message) = match &report.state {
                Ok((id, ownership)) => (
                    Some(id.clone()),
                    Some(*ownership),
                    reasons::ATTACHED,
                    String::new(),
                ),
                Err(failure) => (None, None, failure.reason, failure.message.clone()),
            };
            GrantStatus {
                principal_id: Some(report.grant.principal.to_string()),
                principal_type: Some(report.grant.principal_type.as_arm().to_string()),
                source: report.source.to_string(),
                role: Some(report.grant.role.short_name().to_string()),
                repositories: report.repositories.clone(),
                assignment_id,
                ownership,
                ready: report.state.is_ok(),
                reason: reason.to_string(),
                message,
            }
        })
        .collect();
    statuses.extend(unresolved.iter().map(|problem| GrantStatus {
        principal_id: None,
        principal_type: None,
        source: problem.source.to_string(),
        role: None,
        repositories: Vec::new(),
        assignment_id: None,
        ownership: None,
        ready: false,
        reason: problem.failure.reason.to_string(),
        message: problem.failure.message.clone(),
    }));
    statuses
}

/// "ready/wanted", the READY column.
pub fn ready_count(statuses: &[GrantStatus]) -> String {
    let ready = statuses.iter().filter(|status| status.ready).count();
    format!("{ready}/{}", statuses.len())
}

fn severity(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::RetrySoon => 0,
        ErrorClass::NeedsHuman => 1,
        ErrorClass::Permanent => 2,
    }
}

/// Ready's message when every grant is in place, or the failure to report: the most serious one,
/// naming the grant and how many of the others stand.
pub fn outcome(
    registry_name: &str,
    reports: &[GrantReport],
    unresolved: &[Unresolved],
) -> Result<String, Failure> {
    let total = reports.len() + unresolved.len();
    let ready = reports.iter().filter(|report| report.state.is_ok()).count();
    let failures = reports
        .iter()
        .filter_map(|report| {
            let failure = report.state.as_ref().err()?;
            Some((report.grant.to_string(), failure))
        })
        .chain(unresolved.iter().map(|problem| {
            (
                format!("principal from {}", problem.source),
                &problem.failure,
            )
        }));
    if let Some((what, worst)) = failures.max_by_key(|(_, failure)| severity(failure.class)) {
        let mut failure = worst.clone();
        if total > 1 {
            failure.message = format!("{ready}/{total} grants ready; {what}: {}", worst.message);
        }
        return Err(failure);
    }
    Ok(ready_message(registry_name, reports))
}

fn ready_message(registry_name: &str, reports: &[GrantReport]) -> String {
    let mut message = match reports {
        [only] => single_message(only),
        _ => format!(
            "{} grants in place on {registry_name}: {}",
            reports.len(),
            reports
                .iter()
                .map(|report| format!(
                    "{} for {}",
                    report.grant.role.short_name(),
                    report.grant.principal
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if reports
        .iter()
        .any(|report| report.grant.principal_type == PrincipalType::Group)
    {
        message.push_str(". Granted to a group: pulls work only once the kubelet identity's group membership has propagated in Entra ID, which can take hours; Azure recommends granting the kubelet identity directly");
    }
    message
}

fn single_message(report: &GrantReport) -> String {
    let grant = &report.grant;
    let scope = if report.repositories.is_empty() {
        String::new()
    } else {
        format!(" (repositories {})", report.repositories.join(", "))
    };
    match report.state {
        Ok((_, Ownership::Adopted)) => format!(
            "{} for {} on {}{scope} already existed (adopted; acr-attach will not delete it)",
            grant.role.display_name(),
            grant.principal,
            grant.registry.name()
        ),
        Ok((_, Ownership::Shared)) => format!(
            "{} for {} on {}{scope} is shared with another acr-attach installation (co-owner)",
            grant.role.display_name(),
            grant.principal,
            grant.registry.name()
        ),
        _ => format!(
            "{} granted to {} on {}{scope}",
            grant.role.display_name(),
            grant.principal,
            grant.registry.name()
        ),
    }
}

/// Whether a successful verification at `confirmed` rewrites `status.lastSyncTime`: when anything
/// else in status changes (a write happens anyway), when none is recorded (or it cannot be read),
/// and when the recorded one is `refresh` old. Otherwise a quiet resync window leaves status, and
/// so the API server and every watcher, alone.
pub fn refresh_sync_time(
    recorded: Option<&str>,
    confirmed: jiff::Timestamp,
    status_changes: bool,
    refresh: std::time::Duration,
) -> bool {
    let Some(recorded) = recorded.and_then(|text| text.parse::<jiff::Timestamp>().ok()) else {
        return true;
    };
    let age = confirmed.duration_since(recorded);
    status_changes || jiff::SignedDuration::try_from(refresh).is_ok_and(|refresh| age >= refresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_time_is_rewritten_only_on_change_or_when_it_is_old() {
        let hour = std::time::Duration::from_secs(3600);
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        let recorded = Some("2026-12-02T10:00:00Z");
        let quiet = |now: &str| refresh_sync_time(recorded, at(now), false, hour);
        assert!(
            !quiet("2026-12-02T10:10:00Z"),
            "a quiet window writes nothing"
        );
        assert!(!quiet("2026-12-02T10:59:59Z"));
        assert!(quiet("2026-12-02T11:00:00Z"), "an hour old: refreshed");
        assert!(refresh_sync_time(
            recorded,
            at("2026-12-02T10:10:00Z"),
            true,
            hour
        ));
        assert!(refresh_sync_time(
            None,
            at("2026-12-02T10:10:00Z"),
            false,
            hour
        ));
        assert!(refresh_sync_time(
            Some("yesterday"),
            at("2026-12-02T10:10:00Z"),
            false,
            hour
        ));
    }
    use crate::model::{PrincipalId, PullRole, RegistryId};

    const REGISTRY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shared";

    fn report(principal: &str, state: Result<(String, Ownership), Failure>) -> GrantReport {
        GrantReport {
            grant: Grant {
                registry: RegistryId::parse(REGISTRY).unwrap(),
                principal: PrincipalId::parse(principal).unwrap(),
                principal_type: PrincipalType::ServicePrincipal,
                role: PullRole::AcrPull,
                condition: None,
            },
            source: "Spec",
            repositories: Vec::new(),
            state,
        }
    }

    #[test]
    fn the_most_serious_failure_is_reported_with_the_count() {
        let a = "11111111-1111-1111-1111-111111111111";
        let b = "22222222-2222-2222-2222-222222222222";
        let throttled = Failure::new(ErrorClass::RetrySoon, reasons::AZURE_THROTTLED, "429");
        let forbidden = Failure::new(ErrorClass::NeedsHuman, reasons::AUTHORIZATION_FAILED, "403");
        let reports = [
            report(a, Err(throttled)),
            report(b, Err(forbidden)),
            report(a, Ok(("id".into(), Ownership::Created))),
        ];
        let failure = outcome("shared", &reports, &[]).unwrap_err();
        assert_eq!(failure.reason, reasons::AUTHORIZATION_FAILED);
        assert!(
            failure
                .message
                .starts_with("1/3 grants ready; AcrPull for 2222"),
            "{}",
            failure.message
        );
        assert_eq!(ready_count(&grant_statuses(&reports, &[])), "1/3");
    }

    #[test]
    fn a_single_grant_reads_as_before() {
        let reports = [report(
            "11111111-1111-1111-1111-111111111111",
            Ok(("id".into(), Ownership::Created)),
        )];
        assert_eq!(
            outcome("shared", &reports, &[]).unwrap(),
            "AcrPull granted to 11111111-1111-1111-1111-111111111111 on shared"
        );
    }

    #[test]
    fn a_group_grant_warns_about_membership_propagation() {
        let mut group = report(
            "11111111-1111-1111-1111-111111111111",
            Ok(("id".into(), Ownership::Created)),
        );
        group.grant.principal_type = PrincipalType::Group;
        assert!(
            outcome("shared", &[group], &[])
                .unwrap()
                .contains("propagated")
        );
    }
}
