//! One reconciliation of one `RegistryAttachment`, within a deadline: `attach` (read → plan →
//! execute) or, on deletion, `detach`; then the outcome into status, conditions and events.
//! Azure failures end up as conditions and a requeue delay chosen by their class; only
//! Kubernetes write failures escape as errors.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use crate::controller::Context;
use crate::controller::clock::rfc3339;
use crate::controller::cluster::Notice;
use crate::controller::{attach::attach, detach::detach};
use crate::crd::{RegistryAttachment, RegistryAttachmentStatus, ResolvedRegistry};
use crate::decide::conditions::{self, Outcome, escalate_principal_not_found, next_conditions};
use crate::decide::failure::{ErrorClass, Failure};
use crate::decide::reasons;
use crate::model::RegistryId;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing to the Kubernetes API failed: {0}")]
    Kube(#[from] kube::Error),
}

/// When to look at an attachment again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Requeue(Duration),
    /// Only a change to the object can help.
    AwaitChange,
}

impl From<Next> for Action {
    fn from(next: Next) -> Action {
        match next {
            Next::Requeue(after) => Action::requeue(after),
            Next::AwaitChange => Action::await_change(),
        }
    }
}

/// The controller's entry point.
pub async fn reconcile(
    attachment: Arc<RegistryAttachment>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // A standby keeps its cache warm and nothing else; it reconciles everything once it leads.
    if !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    reconcile_once(&attachment, &ctx).await.map(Action::from)
}

pub async fn reconcile_once(
    attachment: &RegistryAttachment,
    ctx: &Context,
) -> Result<Next, ReconcileError> {
    let started = ctx.clock.now();
    let name = attachment.name_any();
    let work = async {
        if attachment.is_deleting() {
            detach(attachment, ctx).await
        } else {
            if let Some(generation) = attachment.metadata.generation
                && !ready_for(attachment, generation)
            {
                ctx.saw_generation(&name, generation);
            }
            attach(attachment, ctx).await
        }
    };
    // A reconcile that hangs (a stalled connection, a lock held too long) must not hold its
    // worker slot forever: past the deadline it is dropped and retried with backoff. Every ARM
    // write is idempotent by name, so an interrupted one is simply repeated.
    let result = match tokio::time::timeout(ctx.settings.reconcile_deadline, work).await {
        Ok(result) => result,
        Err(_) => {
            let failure = Failure::new(
                ErrorClass::RetrySoon,
                reasons::RECONCILE_TIMED_OUT,
                format!(
                    "the reconcile did not finish within {:?}; retrying",
                    ctx.settings.reconcile_deadline
                ),
            );
            let next = Next::Requeue(ctx.next_backoff(&name, None));
            Ok(Done::failed(next, "progressing", failure))
        }
    };
    let took = ctx.clock.now().saturating_duration_since(started);
    let label = match &result {
        Ok(done) => done.outcome,
        Err(_) => "error",
    };
    ctx.metrics.reconciled(label, took);
    log_outcome(&name, label, took, &result);
    result.map(|done| done.next)
}

/// The one line each reconcile writes: the object, the outcome, and for a failure its reason,
/// detail and ARM's `x-ms-request-id` (what Azure support asks for).
fn log_outcome(name: &str, outcome: &str, took: Duration, result: &Finished) {
    let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(Done {
            next,
            failure: None,
            ..
        }) => info!(attachment = %name, outcome, took_ms, next = ?next, "reconciled"),
        Ok(Done {
            next,
            failure: Some(failure),
            ..
        }) => warn!(
            attachment = %name,
            outcome,
            took_ms,
            next = ?next,
            reason = failure.reason,
            detail = %failure.message,
            arm_request_id = failure.request_id.as_deref(),
            "reconciled"
        ),
        Err(error) => warn!(attachment = %name, outcome, took_ms, %error, "reconciled"),
    }
}

/// Ready=True already describes this generation.
pub(super) fn ready_for(attachment: &RegistryAttachment, generation: i64) -> bool {
    attachment.status.as_ref().is_some_and(|status| {
        status.observed_generation == Some(generation)
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == conditions::READY && c.status == "True")
    })
}

/// How a reconcile ended: when to look again, the outcome label (metrics and logs), and the
/// failure that stopped it, if any.
pub(super) struct Done {
    next: Next,
    outcome: &'static str,
    failure: Option<Failure>,
}

impl Done {
    pub(super) fn new(next: Next, outcome: &'static str) -> Self {
        Self {
            next,
            outcome,
            failure: None,
        }
    }

    pub(super) fn failed(next: Next, outcome: &'static str, failure: Failure) -> Self {
        Self {
            next,
            outcome,
            failure: Some(failure),
        }
    }
}

pub(super) type Finished = Result<Done, ReconcileError>;

/// The status being built in this reconciliation, kept whatever happens, and the status last
/// written (so an unchanged status is not written again).
pub(super) struct Progress {
    pub(super) status: RegistryAttachmentStatus,
    written: Option<RegistryAttachmentStatus>,
}

impl Progress {
    pub(super) fn new(attachment: &RegistryAttachment) -> Self {
        let mut status = attachment.status.clone().unwrap_or_default();
        status.observed_generation = attachment.metadata.generation;
        Self {
            status,
            written: attachment.status.clone(),
        }
    }

    /// True when the status being built differs from the one written in more than its conditions
    /// (decided when it is written) and `lastSyncTime`.
    pub(super) fn changes_beyond_conditions_and_sync_time(&self) -> bool {
        let Some(written) = &self.written else {
            return true;
        };
        let mut compared = self.status.clone();
        compared.conditions = written.conditions.clone();
        compared.last_sync_time = written.last_sync_time.clone();
        &compared != written
    }

    /// Shows the registry being worked on; what was resolved for another registry goes.
    pub(super) fn target_registry(&mut self, registry: &RegistryId) {
        let same = self
            .status
            .registry
            .as_ref()
            .is_some_and(|resolved| resolved.id.eq_ignore_ascii_case(registry.as_str()));
        if !same {
            self.status.registry = Some(ResolvedRegistry {
                id: registry.to_string(),
                login_server: None,
                permissions_mode: None,
            });
            self.status.role = None;
            self.status.role_definition_id = None;
        }
    }
}

/// Writes status and conditions for `outcome` (when anything changed), publishing an event when
/// Ready changes.
pub(super) async fn write_status(
    attachment: &RegistryAttachment,
    ctx: &Context,
    progress: &mut Progress,
    outcome: &Outcome,
    action: &'static str,
) -> Result<(), ReconcileError> {
    // Starts as the object's conditions; after a first write in this reconcile, those written.
    let baseline = progress.status.conditions.clone();
    let now = rfc3339(ctx.clock.wall());
    progress.status.conditions =
        next_conditions(&baseline, outcome, attachment.metadata.generation, &now);
    if progress.written.as_ref() != Some(&progress.status) {
        ctx.cluster
            .apply_status(attachment, &progress.status)
            .await?;
        progress.written = Some(progress.status.clone());
    }
    if let (Outcome::Ready { .. }, Some(generation)) = (outcome, attachment.metadata.generation)
        && let Some(took) = ctx.generation_ready(&attachment.name_any(), generation)
    {
        ctx.metrics.generation_ready(took);
    }
    if let Some(transition) = conditions::transition(&baseline, &progress.status.conditions) {
        let name = attachment.name_any();
        if transition.warning {
            warn!(attachment = %name, reason = %transition.reason, detail = %transition.note, "not ready");
        } else {
            info!(attachment = %name, reason = %transition.reason, detail = %transition.note, "condition changed");
        }
        let notice = Notice {
            warning: transition.warning,
            reason: transition.reason,
            note: transition.note,
            action,
        };
        if let Err(error) = ctx.cluster.publish(attachment, &notice).await {
            // An event is best effort; the condition already carries the information.
            warn!(attachment = %name, %error, "could not publish event");
        }
    }
    Ok(())
}

/// Reports a failure and picks the next attempt by its class. `after_read` says the failure came
/// from re-reading Azure (not from a write), so a grant already confirmed for this generation is
/// still in place and Ready may stay True.
pub(super) async fn finish_failure(
    attachment: &RegistryAttachment,
    ctx: &Context,
    mut progress: Progress,
    failure: Failure,
    after_read: bool,
) -> Finished {
    let name = attachment.name_any();
    let failure = if failure.reason == reasons::PRINCIPAL_NOT_REPLICATED {
        let missing_for = ctx.principal_failure_age(&name);
        escalate_principal_not_found(failure, missing_for, ctx.settings.principal_grace)
    } else {
        failure
    };
    let confirmed_for_this_generation = attachment
        .metadata
        .generation
        .is_some_and(|generation| ready_for(attachment, generation));
    let outcome = Outcome::from_failure(&failure, after_read && confirmed_for_this_generation);
    if let Outcome::Progressing {
        keep_ready: true, ..
    } = outcome
    {
        ctx.metrics.verification_deferred(failure.reason);
        let confirmed_at = attachment
            .status
            .as_ref()
            .and_then(|status| status.last_sync_time.as_deref())
            .unwrap_or("never");
        warn!(attachment = %name, reason = failure.reason, detail = %failure.message, last_sync_time = confirmed_at, "re-verification deferred; the confirmed grant stands");
    }
    write_status(attachment, ctx, &mut progress, &outcome, "Attach").await?;
    let next = match failure.class {
        ErrorClass::RetrySoon => Next::Requeue(ctx.next_backoff(&name, failure.retry_after)),
        ErrorClass::NeedsHuman => Next::Requeue(ctx.settings.stalled_retry),
        ErrorClass::Permanent => Next::AwaitChange,
    };
    Ok(Done::failed(next, outcome.label(), failure))
}

pub(super) async fn release(attachment: &RegistryAttachment, ctx: &Context, why: &str) -> Finished {
    let name = attachment.name_any();
    let notice = Notice {
        warning: false,
        reason: reasons::DETACHED.to_string(),
        note: why.to_string(),
        action: "Detach",
    };
    if let Err(error) = ctx.cluster.publish(attachment, &notice).await {
        warn!(attachment = %name, %error, "could not publish event");
    }
    ctx.cluster.remove_finalizer(attachment).await?;
    ctx.reset_backoff(&name);
    ctx.forget_principal_failure(&name);
    info!(attachment = %name, %why, "released");
    Ok(Done::new(Next::AwaitChange, "detached"))
}
