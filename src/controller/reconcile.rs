//! One reconciliation of one `RegistryAttachment`: validate, hold a finalizer, resolve principal,
//! registry and role, make Azure match the plan, and write the outcome into status. On deletion,
//! detach what we created (or release). Azure failures end up as conditions and a requeue delay
//! chosen by their class; only Kubernetes write failures escape as errors.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use crate::azure::{DeleteOutcome, PutOutcome, RoleAssignmentRequest};
use crate::controller::Context;
use crate::controller::clock::rfc3339;
use crate::controller::cluster::Notice;
use crate::crd::{
    AssignmentStatus, Ownership, RegistryAttachment, RegistryAttachmentStatus, ResolvedPrincipal,
    ResolvedRegistry, SKIP_CLEANUP_ANNOTATION,
};
use crate::decide::allowlist::login_server_allowed;
use crate::decide::conditions::{self, Outcome, escalate_principal_not_found, next_conditions};
use crate::decide::failure::{Classify, ErrorClass, Failure};
use crate::decide::plan::{CleanupPlan, Ensure, Intent, choose_role, plan_apply, plan_cleanup};
use crate::decide::reasons;
use crate::decide::validate::{RequestedPrincipal, describe, validate};
use crate::model::{PrincipalId, RegistryId};

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
    let result = if attachment.is_deleting() {
        detach(attachment, ctx).await
    } else {
        if let Some(generation) = attachment.metadata.generation
            && !ready_for(attachment, generation)
        {
            ctx.saw_generation(&name, generation);
        }
        attach(attachment, ctx).await
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
fn ready_for(attachment: &RegistryAttachment, generation: i64) -> bool {
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
struct Done {
    next: Next,
    outcome: &'static str,
    failure: Option<Failure>,
}

impl Done {
    fn new(next: Next, outcome: &'static str) -> Self {
        Self {
            next,
            outcome,
            failure: None,
        }
    }

    fn failed(next: Next, outcome: &'static str, failure: Failure) -> Self {
        Self {
            next,
            outcome,
            failure: Some(failure),
        }
    }
}

type Finished = Result<Done, ReconcileError>;

/// The status being built in this reconciliation, kept whatever happens.
struct Progress {
    status: RegistryAttachmentStatus,
}

impl Progress {
    fn new(attachment: &RegistryAttachment) -> Self {
        let mut status = attachment.status.clone().unwrap_or_default();
        status.observed_generation = attachment.metadata.generation;
        Self { status }
    }

    /// Shows the registry being worked on; what was resolved for another registry goes.
    fn target_registry(&mut self, registry: &RegistryId) {
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

    fn forget_owned(&mut self, intent: &Intent) {
        let record = intent.record();
        self.status
            .owned_assignments
            .retain(|owned| *owned != record);
    }
}

async fn attach(attachment: &RegistryAttachment, ctx: &Context) -> Finished {
    let mut progress = Progress::new(attachment);

    let desired = match validate(&attachment.spec) {
        Ok(desired) => desired,
        Err(errors) => {
            let failure = Failure::new(
                ErrorClass::Permanent,
                reasons::INVALID_SPEC,
                describe(&errors),
            );
            return finish_failure(attachment, ctx, progress, failure, false).await;
        }
    };
    progress.target_registry(&desired.registry);
    if let Err(refused) = ctx.settings.allow_list.permits(&desired.registry) {
        let failure = Failure::new(
            ErrorClass::NeedsHuman,
            reasons::REGISTRY_NOT_ALLOWED,
            refused.message,
        );
        return finish_failure(attachment, ctx, progress, failure, false).await;
    }

    if !attachment.has_finalizer() {
        ctx.cluster.add_finalizer(attachment).await?;
    }

    let principal = match resolve_principal(&desired.principal, ctx).await {
        Ok((principal, source)) => {
            progress.status.principal = Some(ResolvedPrincipal {
                object_id: principal.to_string(),
                source: source.to_string(),
            });
            principal
        }
        Err(failure) => return finish_failure(attachment, ctx, progress, failure, true).await,
    };

    // Everything from planning to the status write happens under the locks of the registries
    // involved: this one, and those of assignments we may retire.
    let mut registries = vec![desired.registry.key()];
    registries.extend(owned_registry_keys(&progress.status));
    let _locks = ctx.lock_registries(registries).await;

    let snapshot = match ctx
        .reads
        .registry(&desired.registry, ctx.azure.as_ref())
        .await
    {
        Ok(snapshot) => snapshot,
        Err(failure) => return finish_failure(attachment, ctx, progress, failure, true).await,
    };
    progress.status.registry = Some(ResolvedRegistry {
        id: desired.registry.to_string(),
        login_server: snapshot.registry.login_server.clone(),
        permissions_mode: snapshot.registry.mode.map(|mode| mode.as_arm().to_string()),
    });
    if let (Some(suffix), Some(login_server)) = (
        ctx.settings.registry_suffix.as_deref(),
        snapshot.registry.login_server.as_deref(),
    ) && let Err(refused) = login_server_allowed(login_server, suffix)
    {
        let failure = Failure::new(
            ErrorClass::NeedsHuman,
            reasons::REGISTRY_NOT_ALLOWED,
            refused.message,
        );
        return finish_failure(attachment, ctx, progress, failure, false).await;
    }

    let role = match choose_role(desired.role, snapshot.registry.mode) {
        Ok(role) => role,
        Err(problem) => {
            let failure = Failure::new(ErrorClass::NeedsHuman, problem.reason, problem.message);
            return finish_failure(attachment, ctx, progress, failure, false).await;
        }
    };
    progress.status.role = Some(role.short_name().to_string());
    progress.status.role_definition_id = Some(role.definition_id(desired.registry.subscription()));

    let intent = Intent {
        registry: desired.registry.clone(),
        principal,
        role,
        owner: ctx.settings.owner.clone(),
    };
    let name = attachment.name_any();
    let plan = plan_apply(
        &intent,
        &snapshot.assignments,
        &progress.status.owned_assignments,
        &ctx.claims_of_others(&name),
    );

    let (assignment_id, ownership) = match plan.ensure {
        Ensure::Present {
            assignment_id,
            ownership,
        } => {
            // Our derived name: ours to remove later, whoever of us created it.
            if ownership == Ownership::Created
                && !progress.status.owned_assignments.contains(&intent.record())
            {
                progress.status.owned_assignments.push(intent.record());
            }
            (assignment_id, ownership)
        }
        Ensure::Create {
            name: assignment_name,
        } => {
            // Record the assignment before the PUT: if we crash after it, retirement and cleanup
            // still find it (by its derived name).
            if !progress.status.owned_assignments.contains(&intent.record()) {
                progress.status.owned_assignments.push(intent.record());
                let outcome = Outcome::Progressing {
                    reason: reasons::ATTACHING,
                    message: format!("assigning {} to {}", role.display_name(), intent.principal),
                    keep_ready: false,
                };
                write_status(attachment, ctx, &mut progress, &outcome, "Attach").await?;
            }
            let request = RoleAssignmentRequest {
                registry: intent.registry.clone(),
                name: assignment_name,
                principal: intent.principal.clone(),
                role,
                description: format!(
                    "Managed by acr-attach (owner {}) for RegistryAttachment {name}",
                    ctx.settings.owner
                ),
            };
            match create(&request, &intent, ctx).await {
                Ok((id, Ownership::Adopted)) => {
                    // ARM refused our name: nothing of ours exists under it.
                    progress.forget_owned(&intent);
                    (id, Ownership::Adopted)
                }
                Ok(created) => created,
                Err(failure) => {
                    return finish_failure(attachment, ctx, progress, failure, false).await;
                }
            }
        }
    };
    ctx.claim(&name, &assignment_id);
    ctx.forget_principal_failure(&name);
    progress.status.assignment = Some(AssignmentStatus {
        id: assignment_id,
        principal_id: intent.principal.to_string(),
        role: role.short_name().to_string(),
        ownership,
    });

    for (record, stale) in plan.retire {
        match ctx.azure.delete_role_assignment(&stale).await {
            Ok(_) => {
                ctx.reads.record_deleted(&stale).await;
                progress
                    .status
                    .owned_assignments
                    .retain(|owned| *owned != record);
                info!(attachment = %name, assignment = %stale, "retired the previous role assignment");
            }
            Err(error) => {
                // The new grant is in place; the record stays, so the removal is retried.
                return finish_failure(attachment, ctx, progress, error.classify(), false).await;
            }
        }
    }

    progress.status.last_sync_time = Some(rfc3339(snapshot.fetched_at));
    ctx.reset_backoff(&name);
    let message = match ownership {
        Ownership::Created => format!(
            "{} granted to {} on {}",
            role.display_name(),
            intent.principal,
            desired.registry.name()
        ),
        Ownership::Adopted => format!(
            "{} for {} on {} already existed (adopted; acr-attach will not delete it)",
            role.display_name(),
            intent.principal,
            desired.registry.name()
        ),
    };
    write_status(
        attachment,
        ctx,
        &mut progress,
        &Outcome::Ready { message },
        "Attach",
    )
    .await?;
    // Wake just after the registry's shared reads expire: the first attachment to wake refreshes
    // them and the rest reuse that read.
    let until_expiry = snapshot
        .expires_at
        .saturating_duration_since(ctx.clock.now());
    Ok(Done::new(
        Next::Requeue(until_expiry + Duration::from_secs(1)),
        "ready",
    ))
}

/// Registry keys of the assignments an attachment owns (their retirement may need the lock).
fn owned_registry_keys(status: &RegistryAttachmentStatus) -> Vec<String> {
    status
        .owned_assignments
        .iter()
        .filter_map(|record| RegistryId::parse(&record.registry_id).ok())
        .map(|registry| registry.key())
        .collect()
}

/// PUT the assignment; on 409 adopt the equivalent one that exists under another name.
async fn create(
    request: &RoleAssignmentRequest,
    intent: &Intent,
    ctx: &Context,
) -> Result<(String, Ownership), Failure> {
    match ctx.azure.put_role_assignment(request).await {
        Ok(PutOutcome::Applied(assignment)) => {
            let id = assignment.id.clone();
            ctx.reads.record_created(&intent.registry, assignment).await;
            Ok((id, Ownership::Created))
        }
        Ok(PutOutcome::AlreadyExists { existing_name }) => {
            let listed = ctx
                .reads
                .relist(&intent.registry, ctx.azure.as_ref())
                .await?;
            listed
                .iter()
                .find(|a| a.grants(&intent.registry, &intent.principal, intent.role))
                .map(|existing| (existing.id.clone(), Ownership::Adopted))
                .ok_or_else(|| {
                    Failure::new(
                        ErrorClass::RetrySoon,
                        reasons::ATTACHING,
                        format!(
                            "Azure reports an equivalent role assignment ({}) that is not listed yet; retrying",
                            existing_name.unwrap_or_else(|| "unnamed".to_string())
                        ),
                    )
                })
        }
        Err(error) => Err(error.classify()),
    }
}

async fn resolve_principal(
    requested: &RequestedPrincipal,
    ctx: &Context,
) -> Result<(PrincipalId, &'static str), Failure> {
    use crate::controller::KubeletIdentity;
    match (requested, &ctx.settings.kubelet_identity) {
        (RequestedPrincipal::Explicit(principal), _) => Ok((principal.clone(), "Spec")),
        (RequestedPrincipal::KubeletIdentity, KubeletIdentity::ObjectId(principal)) => {
            Ok((principal.clone(), "OperatorConfig"))
        }
        (RequestedPrincipal::KubeletIdentity, KubeletIdentity::FromCluster(cluster)) => {
            let object_id = ctx
                .reads
                .kubelet_identity(cluster, ctx.azure.as_ref())
                .await?;
            let missing = || {
                Failure::new(
                    ErrorClass::NeedsHuman,
                    reasons::KUBELET_IDENTITY_MISSING,
                    format!(
                        "the AKS cluster {cluster} reports no properties.identityProfile.kubeletidentity.objectId (a service-principal cluster?); set spec.principal.objectId or --kubelet-object-id"
                    ),
                )
            };
            let object_id = object_id.ok_or_else(missing)?;
            let principal = PrincipalId::parse(&object_id).map_err(|_| missing())?;
            Ok((principal, "ManagedCluster"))
        }
        (RequestedPrincipal::KubeletIdentity, KubeletIdentity::Unconfigured) => Err(Failure::new(
            ErrorClass::NeedsHuman,
            reasons::NO_PRINCIPAL_CONFIGURED,
            "spec.principal.objectId is not set and acr-attach was started without --kubelet-object-id or --cluster-resource-id; set one of them",
        )),
    }
}

/// Writes status and conditions for `outcome`, publishing an event when Ready changes.
async fn write_status(
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
    ctx.cluster
        .patch_status(attachment, &progress.status)
        .await?;
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
async fn finish_failure(
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

async fn detach(attachment: &RegistryAttachment, ctx: &Context) -> Finished {
    if !attachment.has_finalizer() {
        return Ok(Done::new(Next::AwaitChange, "detached"));
    }
    let name = attachment.name_any();
    // A deleting attachment relies on nothing any more.
    ctx.drop_claims(&name);
    let status = attachment.status.clone().unwrap_or_default();
    let _locks = ctx.lock_registries(owned_registry_keys(&status)).await;
    let claims = ctx.claims_of_others(&name);
    let assignment_ids = match plan_cleanup(attachment, &ctx.settings.owner, &claims) {
        CleanupPlan::Release { why } => return release(attachment, ctx, &why).await,
        CleanupPlan::Delete { assignment_ids } => assignment_ids,
    };
    for assignment_id in &assignment_ids {
        match ctx.azure.delete_role_assignment(assignment_id).await {
            Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => {
                ctx.reads.record_deleted(assignment_id).await;
            }
            Err(error) => {
                let failure = error.classify();
                let mut progress = Progress::new(attachment);
                let outcome = match failure.class {
                    ErrorClass::RetrySoon => Outcome::Progressing {
                        reason: reasons::DETACHING,
                        message: format!("deleting {assignment_id}: {}", failure.message),
                        keep_ready: false,
                    },
                    ErrorClass::NeedsHuman | ErrorClass::Permanent => Outcome::Stalled {
                        reason: reasons::DETACH_BLOCKED,
                        message: format!(
                            "cannot delete role assignment {assignment_id}: {}. Fix that, or set the annotation {SKIP_CLEANUP_ANNOTATION}: \"true\" to release this object and leave the assignment in Azure",
                            failure.message
                        ),
                    },
                };
                write_status(attachment, ctx, &mut progress, &outcome, "Detach").await?;
                let delay = match failure.class {
                    ErrorClass::RetrySoon => ctx.next_backoff(&name, failure.retry_after),
                    _ => ctx.settings.stalled_retry,
                };
                return Ok(Done::failed(Next::Requeue(delay), outcome.label(), failure));
            }
        }
    }
    release(
        attachment,
        ctx,
        &format!("deleted role assignment {}", assignment_ids.join(", ")),
    )
    .await
}

async fn release(attachment: &RegistryAttachment, ctx: &Context, why: &str) -> Finished {
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
