//! Detach: on deletion, release what this attachment recorded — delete the assignments ARM lists
//! under our names that nobody else relies on, leave co-owned ones to their other owners, forget
//! records ARM has no assignment for — then remove the finalizer. Orphan and the skip-cleanup
//! annotation release without touching Azure.

use std::collections::HashSet;

use kube::ResourceExt;

use crate::controller::Context;
use crate::controller::execute::execute;
use crate::controller::reconcile::{Done, Finished, Next, Progress, release, write_status};
use crate::crd::{RegistryAttachment, SKIP_CLEANUP_ANNOTATION};
use crate::decide::conditions::Outcome;
use crate::decide::failure::{ErrorClass, Failure};
use crate::decide::plan::{Detach, PlanInput, detach_policy, plan, record_registries};
use crate::decide::reasons;
use crate::model::azure::RoleAssignment;

pub(super) async fn detach(attachment: &RegistryAttachment, ctx: &Context) -> Finished {
    if !attachment.has_finalizer() {
        return Ok(Done::new(Next::AwaitChange, "detached"));
    }
    let name = attachment.name_any();
    // A deleting attachment relies on nothing any more.
    ctx.drop_claims(&name);
    if let Detach::Release { why } = detach_policy(attachment) {
        return release(attachment, ctx, &why).await;
    }
    let owned = attachment
        .status
        .as_ref()
        .map(|status| status.owned_assignments.clone())
        .unwrap_or_default();
    let registries = record_registries(&owned);
    // Under the locks: ARM reads and writes only; status and events after they are released.
    let executed = {
        let _locks = ctx
            .lock_registries(registries.iter().map(|registry| registry.key()))
            .await;
        match list_registries(ctx, &registries).await {
            Ok((existing, listed)) => {
                let claims = ctx.claims_of_others(&name, true);
                let plan = plan(&PlanInput {
                    attachment: &name,
                    owner: &ctx.settings.owner,
                    wanted: &[],
                    existing: &existing,
                    listed: &listed,
                    owned: &owned,
                    claims: &claims,
                });
                Ok(execute(plan, &owned, ctx, &name).await)
            }
            Err(failure) => Err(failure),
        }
    };
    let executed = match executed {
        Ok(executed) => executed,
        Err(failure) => return blocked(attachment, ctx, failure).await,
    };
    if let Some(failure) = executed.release_failure {
        return blocked(attachment, ctx, failure).await;
    }
    let why = if executed.released.is_empty() {
        "no role assignment of acr-attach's was left to delete (absent in Azure, or still needed by another RegistryAttachment)".to_string()
    } else {
        executed.released.join("; ")
    };
    release(attachment, ctx, &why).await
}

/// The assignments at every registry the records point at. A registry that is gone has none
/// (its assignments went with it).
async fn list_registries(
    ctx: &Context,
    registries: &[crate::model::RegistryId],
) -> Result<(Vec<RoleAssignment>, HashSet<String>), Failure> {
    let mut existing = Vec::new();
    let mut listed = HashSet::new();
    for registry in registries {
        match ctx.reads.registry(registry, ctx.azure.as_ref()).await {
            Ok(snapshot) => existing.extend(snapshot.assignments),
            Err(failure) if failure.reason == reasons::REGISTRY_NOT_FOUND => {}
            Err(failure) => return Err(failure),
        }
        listed.insert(registry.key());
    }
    Ok((existing, listed))
}

/// Detach cannot finish: retried (transient) or reported with the escape hatch.
async fn blocked(attachment: &RegistryAttachment, ctx: &Context, failure: Failure) -> Finished {
    let name = attachment.name_any();
    let mut progress = Progress::new(attachment);
    let outcome = match failure.class {
        ErrorClass::RetrySoon => Outcome::Progressing {
            reason: reasons::DETACHING,
            message: format!("detaching: {}", failure.message),
            keep_ready: false,
        },
        ErrorClass::NeedsHuman | ErrorClass::Permanent => Outcome::Stalled {
            reason: reasons::DETACH_BLOCKED,
            message: format!(
                "cannot detach: {}. Fix that, or set the annotation {SKIP_CLEANUP_ANNOTATION}: \"true\" to release this object and leave the assignment in Azure",
                failure.message
            ),
        },
    };
    write_status(attachment, ctx, &mut progress, &outcome, "Detach").await?;
    let delay = match failure.class {
        ErrorClass::RetrySoon => ctx.next_backoff(&name, failure.retry_after),
        _ => ctx.settings.stalled_retry,
    };
    Ok(Done::failed(Next::Requeue(delay), outcome.label(), failure))
}
