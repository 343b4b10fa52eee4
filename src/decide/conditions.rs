//! Conditions from outcomes: `Ready` (always present), plus kstatus' `Reconciling` and `Stalled`,
//! with metav1.Condition semantics — lastTransitionTime moves only when a status flips, and each
//! condition carries the generation it describes. Also decides which changes deserve an event.

use std::time::Duration;

use crate::crd::Condition;
use crate::decide::failure::{ErrorClass, Failure};
use crate::decide::reasons;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// The result of one reconciliation, as far as conditions are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The grant exists.
    Ready { message: String },
    /// Work in progress or a transient failure being retried.
    Progressing {
        reason: &'static str,
        message: String,
        /// A transient failure while re-verifying a grant that was already confirmed for this
        /// generation: Ready stays True and Reconciling False, so GitOps tools do not flap on a
        /// throttled resync.
        keep_ready: bool,
    },
    /// Only a human can fix it.
    Stalled {
        reason: &'static str,
        message: String,
    },
}

impl Outcome {
    pub fn from_failure(failure: &Failure, keep_ready: bool) -> Self {
        match failure.class {
            ErrorClass::RetrySoon => Outcome::Progressing {
                reason: failure.reason,
                message: failure.message.clone(),
                keep_ready,
            },
            ErrorClass::NeedsHuman | ErrorClass::Permanent => Outcome::Stalled {
                reason: failure.reason,
                message: failure.message.clone(),
            },
        }
    }

    /// Short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ready { .. } => "ready",
            Outcome::Progressing { .. } => "progressing",
            Outcome::Stalled { .. } => "stalled",
        }
    }
}

/// PrincipalNotFound is normal for a few minutes after an identity is created (Entra replication);
/// past `grace` it is something a human must look at.
pub fn escalate_principal_not_found(
    failure: Failure,
    missing_for: Duration,
    grace: Duration,
) -> Failure {
    if failure.reason != reasons::PRINCIPAL_NOT_REPLICATED || missing_for < grace {
        return failure;
    }
    Failure {
        class: ErrorClass::NeedsHuman,
        reason: reasons::PRINCIPAL_NOT_FOUND,
        message: format!(
            "Azure has not found the principal for {} ({}); check the object id, and note that a principal from another Entra tenant than the registry's cannot be assigned",
            humanize(missing_for),
            failure.message
        ),
        retry_after: failure.retry_after,
        request_id: failure.request_id,
    }
}

fn humanize(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 120 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// metav1.Condition's limit on `message`: a longer one makes the API server refuse the whole
/// status write, so the user would never see the condition at all.
pub const MAX_CONDITION_MESSAGE: usize = 32768;

/// At most `limit` bytes of `text`, cut on a character boundary and marked when cut.
pub fn truncate_bytes(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    const MARK: &str = " …";
    let mut end = limit.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let message = truncate_bytes(message, MAX_CONDITION_MESSAGE);
    let last_transition_time = find(previous, type_)
        .filter(|old| old.status == status)
        .map(|old| old.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        observed_generation: generation,
        last_transition_time,
        reason: reason.to_string(),
        message,
    }
}

/// The full condition list for `outcome`, reusing transition times from `previous`.
pub fn next_conditions(
    previous: &[Condition],
    outcome: &Outcome,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let make = |type_, status, reason: &str, message: &str| {
        condition(previous, type_, status, reason, message, generation, now)
    };
    match outcome {
        Outcome::Ready { message } => vec![
            make(READY, true, reasons::ATTACHED, message),
            make(RECONCILING, false, reasons::RECONCILED, ""),
            make(STALLED, false, reasons::NOT_STALLED, ""),
        ],
        Outcome::Progressing {
            reason,
            message,
            keep_ready,
        } => {
            match find(previous, READY) {
                // The rule for a grant known to exist whose re-verification failed: it is still
                // Ready, and nothing is in progress from the user's point of view, so kstatus
                // (which checks Reconciling before Ready) keeps reporting Current. The retry shows
                // in Reconciling's message, status.lastSyncTime, a metric and a log line.
                Some(old) if *keep_ready && old.status == "True" => vec![
                    Condition {
                        observed_generation: generation,
                        ..old.clone()
                    },
                    make(
                        RECONCILING,
                        false,
                        reasons::VERIFICATION_DEFERRED,
                        &format!(
                            "re-verification failed and is retried ({reason}: {message}); the grant confirmed at status.lastSyncTime stands"
                        ),
                    ),
                    make(STALLED, false, reasons::NOT_STALLED, ""),
                ],
                _ => vec![
                    make(READY, false, reason, message),
                    make(RECONCILING, true, reason, message),
                    make(STALLED, false, reasons::NOT_STALLED, ""),
                ],
            }
        }
        Outcome::Stalled { reason, message } => vec![
            make(READY, false, reason, message),
            make(RECONCILING, false, reasons::RECONCILED, ""),
            make(STALLED, true, reason, message),
        ],
    }
}

/// Attachments counted by their Ready condition's (status, reason); an attachment without status
/// yet counts as ("Unknown", "Pending").
pub fn count_by_ready<'a>(
    statuses: impl IntoIterator<Item = Option<&'a crate::crd::RegistryAttachmentStatus>>,
) -> std::collections::BTreeMap<(String, String), i64> {
    let mut counts = std::collections::BTreeMap::new();
    for status in statuses {
        let key = status
            .and_then(|status| find(&status.conditions, READY))
            .map(|ready| (ready.status.clone(), ready.reason.clone()))
            .unwrap_or_else(|| ("Unknown".to_string(), "Pending".to_string()));
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// An event worth publishing: Ready changed status or reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

pub fn transition(previous: &[Condition], next: &[Condition]) -> Option<Transition> {
    let new = find(next, READY)?;
    let old = find(previous, READY);
    if old.is_some_and(|old| old.status == new.status && old.reason == new.reason) {
        return None;
    }
    // Progress steps are normal news; anything else short of Ready deserves a warning.
    let progress = [reasons::ATTACHING, reasons::DETACHING].contains(&new.reason.as_str());
    Some(Transition {
        warning: new.status != "True" && !progress,
        reason: new.reason.clone(),
        note: new.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-11-23T10:00:00Z";
    const T1: &str = "2026-11-23T10:05:00Z";

    fn get<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        find(conditions, type_).unwrap()
    }

    #[test]
    fn ready_reconciling_and_stalled_are_always_present() {
        for outcome in [
            Outcome::Ready {
                message: "m".into(),
            },
            Outcome::Progressing {
                reason: reasons::ATTACHING,
                message: "m".into(),
                keep_ready: false,
            },
            Outcome::Stalled {
                reason: reasons::INVALID_SPEC,
                message: "m".into(),
            },
        ] {
            let conditions = next_conditions(&[], &outcome, Some(3), T0);
            let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
            assert_eq!(types, [READY, RECONCILING, STALLED]);
            assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = next_conditions(
            &[],
            &Outcome::Ready {
                message: "a".into(),
            },
            Some(1),
            T0,
        );
        let again = next_conditions(
            &first,
            &Outcome::Ready {
                message: "b".into(),
            },
            Some(2),
            T1,
        );
        assert_eq!(get(&again, READY).last_transition_time, T0);
        assert_eq!(get(&again, READY).observed_generation, Some(2));
        let stalled = next_conditions(
            &again,
            &Outcome::Stalled {
                reason: reasons::AUTHORIZATION_FAILED,
                message: "m".into(),
            },
            Some(2),
            T1,
        );
        assert_eq!(get(&stalled, READY).last_transition_time, T1);
        assert_eq!(get(&stalled, STALLED).status, "True");
        // Reconciling stayed False, so its time is kept.
        assert_eq!(get(&stalled, RECONCILING).last_transition_time, T0);
    }

    #[test]
    fn throttled_resync_of_a_ready_attachment_keeps_ready() {
        let ready = next_conditions(
            &[],
            &Outcome::Ready {
                message: "ok".into(),
            },
            Some(1),
            T0,
        );
        let throttled = next_conditions(
            &ready,
            &Outcome::Progressing {
                reason: reasons::AZURE_THROTTLED,
                message: "429".into(),
                keep_ready: true,
            },
            Some(1),
            T1,
        );
        assert_eq!(get(&throttled, READY).status, "True");
        assert_eq!(get(&throttled, READY).last_transition_time, T0);
        // kstatus reads Reconciling before Ready: True here would turn a healthy attachment
        // InProgress on every throttled resync.
        assert_eq!(get(&throttled, RECONCILING).status, "False");
        assert_eq!(
            get(&throttled, RECONCILING).reason,
            reasons::VERIFICATION_DEFERRED
        );
        assert!(get(&throttled, RECONCILING).message.contains("429"));
        assert_eq!(get(&throttled, STALLED).status, "False");
        assert_eq!(transition(&ready, &throttled), None);
    }

    #[test]
    fn events_fire_on_ready_transitions_only() {
        let progressing = next_conditions(
            &[],
            &Outcome::Progressing {
                reason: reasons::ATTACHING,
                message: "m".into(),
                keep_ready: false,
            },
            Some(1),
            T0,
        );
        assert!(
            transition(&[], &progressing)
                .is_some_and(|t| !t.warning && t.reason == reasons::ATTACHING)
        );
        let stalled = next_conditions(
            &[],
            &Outcome::Stalled {
                reason: reasons::AUTHORIZATION_FAILED,
                message: "m".into(),
            },
            Some(1),
            T0,
        );
        assert!(transition(&[], &stalled).is_some_and(|t| t.warning));
        let ready = next_conditions(
            &progressing,
            &Outcome::Ready {
                message: "ok".into(),
            },
            Some(1),
            T1,
        );
        assert_eq!(
            transition(&progressing, &ready),
            Some(Transition {
                warning: false,
                reason: reasons::ATTACHED.into(),
                note: "ok".into()
            })
        );
        let ready_again = next_conditions(
            &ready,
            &Outcome::Ready {
                message: "ok".into(),
            },
            Some(1),
            T1,
        );
        assert_eq!(transition(&ready, &ready_again), None);
    }

    #[test]
    fn attachments_are_counted_by_ready_status_and_reason() {
        let ready = crate::crd::RegistryAttachmentStatus {
            conditions: next_conditions(
                &[],
                &Outcome::Ready {
                    message: "ok".into(),
                },
                Some(1),
                T0,
            ),
            ..Default::default()
        };
        let stalled = crate::crd::RegistryAttachmentStatus {
            conditions: next_conditions(
                &[],
                &Outcome::Stalled {
                    reason: reasons::AUTHORIZATION_FAILED,
                    message: "403".into(),
                },
                Some(1),
                T0,
            ),
            ..Default::default()
        };
        let counts = count_by_ready([Some(&ready), Some(&ready), Some(&stalled), None]);
        let key = |status: &str, reason: &str| (status.to_string(), reason.to_string());
        assert_eq!(counts[&key("True", reasons::ATTACHED)], 2);
        assert_eq!(counts[&key("False", reasons::AUTHORIZATION_FAILED)], 1);
        assert_eq!(counts[&key("Unknown", "Pending")], 1);
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn principal_not_found_escalates_after_the_grace_period() {
        let failure = Failure::new(
            ErrorClass::RetrySoon,
            reasons::PRINCIPAL_NOT_REPLICATED,
            "PrincipalNotFound",
        );
        let grace = Duration::from_secs(600);
        let early = escalate_principal_not_found(failure.clone(), Duration::from_secs(30), grace);
        assert_eq!(early.class, ErrorClass::RetrySoon);
        let late = escalate_principal_not_found(failure, Duration::from_secs(900), grace);
        assert_eq!(late.class, ErrorClass::NeedsHuman);
        assert_eq!(late.reason, reasons::PRINCIPAL_NOT_FOUND);
        assert!(late.message.contains("another Entra tenant"));
    }
}
