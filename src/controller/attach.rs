//! Attach: read the facts (spec, principals, the registry and its assignments, the registries old
//! records point at), plan with `decide::plan`, record intent, execute under the registry locks,
//! and report every grant. Kubernetes writes and events happen outside the locks.

use std::collections::HashSet;
use std::time::Duration;

use kube::ResourceExt;

use crate::controller::Context;
use crate::controller::clock::rfc3339;
use crate::controller::execute::{Executed, execute};
use crate::controller::reconcile::{
    Done, Finished, Next, Progress, finish_failure, ready_for, write_status,
};
use crate::controller::shared_reads::RegistrySnapshot;
use crate::crd::{AssignmentStatus, RegistryAttachment, ResolvedPrincipal, ResolvedRegistry};
use crate::decide::allowlist::{RegistryNotAllowed, login_server_allowed};
use crate::decide::conditions::{Outcome, escalate_principal_not_found};
use crate::decide::failure::{ErrorClass, Failure};
use crate::decide::plan::{Plan, PlanInput, Resolved, plan, record_registries, wanted_grants};
use crate::decide::reasons;
use crate::decide::registry_lookup::{list_scope, resolve};
use crate::decide::report::{self, GrantReport, Unresolved};
use crate::decide::validate::{
    DesiredAttachment, RegistryTarget, RequestedPrincipal, describe, validate,
};
use crate::model::grant::Grant;
use crate::model::{PrincipalId, PrincipalType, PullRole};

/// What one attach read from Azure.
struct Facts {
    target: RegistrySnapshot,
    resolved: Vec<Resolved>,
    unresolved: Vec<Unresolved>,
}

pub(super) async fn attach(attachment: &RegistryAttachment, ctx: &Context) -> Finished {
    let mut progress = Progress::new(attachment);
    let requested = match validate(&attachment.spec) {
        Ok(requested) => requested,
        Err(errors) => {
            let failure = Failure::new(
                ErrorClass::Permanent,
                reasons::INVALID_SPEC,
                describe(&errors),
            );
            return finish_failure(attachment, ctx, progress, failure, false).await;
        }
    };
    let desired = match locate_registry(requested, ctx).await {
        Ok(desired) => desired,
        Err(failure) => {
            // A list that could not be read is a re-read: a confirmed grant stays Ready.
            let after_read = failure.class == ErrorClass::RetrySoon;
            return finish_failure(attachment, ctx, progress, failure, after_read).await;
        }
    };
    progress.target_registry(&desired.registry);
    if !attachment.has_finalizer() {
        ctx.cluster.add_finalizer(attachment).await?;
    }
    let facts = match read_facts(&desired, ctx).await {
        Ok(facts) => facts,
        Err(failure) => return finish_failure(attachment, ctx, progress, failure, true).await,
    };
    show_registry(&mut progress, &desired, &facts);
    if let Some(failure) = login_server_refusal(&facts.target, ctx) {
        return finish_failure(attachment, ctx, progress, failure, false).await;
    }
    let wanted = match wanted_grants(&desired, facts.target.registry.mode, &facts.resolved) {
        Ok(wanted) => wanted,
        Err(problem) => {
            let failure = Failure::new(ErrorClass::NeedsHuman, problem.reason, problem.message);
            return finish_failure(attachment, ctx, progress, failure, false).await;
        }
    };
    show_role(&mut progress, &desired, &wanted);
    apply_grants(attachment, ctx, progress, &desired, &facts, &wanted).await
}

/// The registry the spec names, admitted by the allow-list: the resource id as written, or the one
/// registry of that name in its subscription's (or resource group's) list, read once per window.
/// The list's scope is checked before it is read and the registry found after, so neither a
/// refused id nor a refused name costs an Azure call that could lead to a write.
async fn locate_registry(
    requested: DesiredAttachment<RegistryTarget>,
    ctx: &Context,
) -> Result<DesiredAttachment, Failure> {
    let not_allowed = |refused: RegistryNotAllowed| {
        Failure::new(
            ErrorClass::NeedsHuman,
            reasons::REGISTRY_NOT_ALLOWED,
            refused.message,
        )
    };
    let registry = match &requested.registry {
        RegistryTarget::Id(id) => id.clone(),
        RegistryTarget::Name(lookup) => {
            let scope = list_scope(lookup, ctx.settings.lookup_subscription().as_deref())?;
            ctx.settings
                .allow_list
                .permits_scope(&scope)
                .map_err(not_allowed)?;
            let listed = ctx.reads.registry_list(&scope, ctx.azure.as_ref()).await?;
            resolve(lookup, &scope, &listed)?
        }
    };
    ctx.settings
        .allow_list
        .permits(&registry)
        .map_err(not_allowed)?;
    Ok(requested.with_registry(registry))
}

/// Plan, record intent, execute, report.
async fn apply_grants(
    attachment: &RegistryAttachment,
    ctx: &Context,
    mut progress: Progress,
    desired: &DesiredAttachment,
    facts: &Facts,
    wanted: &[Grant],
) -> Finished {
    let name = attachment.name_any();
    let first = plan_now(ctx, &name, wanted, &facts.target, &progress).await;
    // Record every assignment we may create before any PUT (outside the locks): if we crash
    // after the PUT, retirement and cleanup still find it by its derived name.
    let mut recorded = false;
    for record in first.records_needed() {
        if !record.is_among(&progress.status.owned_assignments) {
            progress.status.owned_assignments.push(record.clone());
            recorded = true;
        }
    }
    if recorded {
        let outcome = Outcome::Progressing {
            reason: reasons::ATTACHING,
            message: format!("creating role assignments on {}", desired.registry.name()),
            keep_ready: false,
        };
        write_status(attachment, ctx, &mut progress, &outcome, "Attach").await?;
    }
    let executed = {
        let mut keys = vec![desired.registry.key()];
        keys.extend(
            record_registries(&progress.status.owned_assignments)
                .iter()
                .map(|registry| registry.key()),
        );
        let _locks = ctx.lock_registries(keys).await;
        // Siblings may have written since the first plan: plan again from the (shared, updated)
        // listing; only steps whose record is already in status may write.
        let plan = plan_now(ctx, &name, wanted, &facts.target, &progress).await;
        execute(plan, &progress.status.owned_assignments, ctx, &name).await
    };
    finish_grants(attachment, ctx, progress, desired, facts, executed).await
}

async fn finish_grants(
    attachment: &RegistryAttachment,
    ctx: &Context,
    mut progress: Progress,
    desired: &DesiredAttachment,
    facts: &Facts,
    mut executed: Executed,
) -> Finished {
    let name = attachment.name_any();
    escalate_missing_principals(ctx, &name, &mut executed.reports);
    let repositories: Vec<String> = desired
        .repositories
        .iter()
        .map(ToString::to_string)
        .collect();
    for report in &mut executed.reports {
        report.source = source_of(&facts.resolved, &report.grant.principal);
        if report.grant.condition.is_some() {
            report.repositories = repositories.clone();
        }
    }
    executed.record_into(&mut progress.status.owned_assignments);
    ctx.claim(&name, &executed.reports);
    let statuses = report::grant_statuses(&executed.reports, &facts.unresolved);
    progress.status.ready_grants = Some(report::ready_count(&statuses));
    progress.status.grants = statuses;
    progress.status.assignment = first_pull_assignment(&executed.reports);
    let outcome = report::outcome(
        desired.registry.name(),
        &executed.reports,
        &facts.unresolved,
    )
    .and_then(|message| match executed.release_failure.take() {
        Some(failure) => Err(failure),
        None => Ok(message),
    });
    match outcome {
        Ok(message) => {
            let confirmed = facts.target.fetched_at;
            if report::refresh_sync_time(
                progress.status.last_sync_time.as_deref(),
                confirmed,
                status_changes(attachment, &progress),
                ctx.settings.sync_time_refresh,
            ) {
                progress.status.last_sync_time = Some(rfc3339(confirmed));
            }
            ctx.reset_backoff(&name);
            write_status(
                attachment,
                ctx,
                &mut progress,
                &Outcome::Ready { message },
                "Attach",
            )
            .await?;
            // Wake just after the registry's shared reads expire: the first attachment to wake
            // refreshes them and the rest reuse that read.
            let until_expiry = facts
                .target
                .expires_at
                .saturating_duration_since(ctx.clock.now());
            Ok(Done::new(
                Next::Requeue(until_expiry + Duration::from_secs(1)),
                "ready",
            ))
        }
        Err(failure) => {
            // A failure to re-read (principals) keeps a confirmed grant Ready; a failed write does not.
            let after_read = executed.reports.iter().all(|report| report.state.is_ok());
            finish_failure(attachment, ctx, progress, failure, after_read).await
        }
    }
}

/// Whether this reconcile changes status beyond the verification time: any field differs from
/// what is written, or Ready was not yet True for this generation (the conditions change).
fn status_changes(attachment: &RegistryAttachment, progress: &Progress) -> bool {
    let ready_already = attachment
        .metadata
        .generation
        .is_some_and(|generation| ready_for(attachment, generation));
    !ready_already || progress.changes_beyond_conditions_and_sync_time()
}

/// The plan as of now: the registry's shared listing, the listings old records point at, and
/// what others claim.
async fn plan_now(
    ctx: &Context,
    attachment: &str,
    wanted: &[Grant],
    target: &RegistrySnapshot,
    progress: &Progress,
) -> Plan {
    let owned = &progress.status.owned_assignments;
    let mut existing = ctx
        .reads
        .cached_assignments(&target.registry_id)
        .await
        .unwrap_or_else(|| target.assignments.clone());
    let mut listed: HashSet<String> = [target.registry_id.key()].into();
    for registry in record_registries(owned) {
        if listed.contains(&registry.key()) {
            continue;
        }
        // An old registry that cannot be read now keeps its records for the next round.
        if let Ok(snapshot) = ctx.reads.registry(&registry, ctx.azure.as_ref()).await {
            existing.extend(snapshot.assignments);
            listed.insert(registry.key());
        } else if ctx.reads.registry_is_gone(&registry).await {
            listed.insert(registry.key());
        }
    }
    let claims = ctx.claims_of_others(attachment, false);
    plan(&PlanInput {
        attachment,
        owner: &ctx.settings.owner,
        wanted,
        existing: &existing,
        listed: &listed,
        owned,
        claims: &claims,
    })
}

async fn read_facts(desired: &DesiredAttachment, ctx: &Context) -> Result<Facts, Failure> {
    let (resolved, unresolved) = resolve_principals(&desired.principals, ctx).await?;
    let target = ctx
        .reads
        .registry(&desired.registry, ctx.azure.as_ref())
        .await?;
    Ok(Facts {
        target,
        resolved,
        unresolved,
    })
}

/// Resolves every requested principal. A principal that cannot be resolved for a reason only a
/// human can fix is reported on its own (the others still get their grants); a transient failure
/// fails the read, as the grants cannot be judged without it.
async fn resolve_principals(
    requested: &[RequestedPrincipal],
    ctx: &Context,
) -> Result<(Vec<Resolved>, Vec<Unresolved>), Failure> {
    let mut resolved: Vec<Resolved> = Vec::new();
    let mut unresolved = Vec::new();
    for principal in requested {
        match resolve_principal(principal, ctx).await {
            Ok(found) => {
                if !resolved.iter().any(|r| r.principal == found.principal) {
                    resolved.push(found);
                }
            }
            Err(failure) if failure.class == ErrorClass::RetrySoon => return Err(failure),
            Err(failure) => unresolved.push(Unresolved {
                source: source_name(principal),
                failure,
            }),
        }
    }
    Ok((resolved, unresolved))
}

fn source_name(principal: &RequestedPrincipal) -> &'static str {
    match principal {
        RequestedPrincipal::Explicit { .. } => "Spec",
        RequestedPrincipal::Identity(_) => "Identity",
        RequestedPrincipal::KubeletIdentity => "KubeletIdentity",
    }
}

async fn resolve_principal(
    requested: &RequestedPrincipal,
    ctx: &Context,
) -> Result<Resolved, Failure> {
    use crate::controller::KubeletIdentity;
    let service_principal = |principal, source| Resolved {
        principal,
        kind: PrincipalType::ServicePrincipal,
        source,
    };
    match (requested, &ctx.settings.kubelet_identity) {
        (RequestedPrincipal::Explicit { principal, kind }, _) => Ok(Resolved {
            principal: principal.clone(),
            kind: *kind,
            source: "Spec",
        }),
        (RequestedPrincipal::Identity(identity), _) => {
            let object_id = ctx.reads.identity(identity, ctx.azure.as_ref()).await?;
            let principal = PrincipalId::parse(&object_id).map_err(|problem| {
                Failure::new(
                    ErrorClass::NeedsHuman,
                    reasons::IDENTITY_NOT_FOUND,
                    format!("the identity {identity} reports an unusable principalId: {problem}"),
                )
            })?;
            Ok(service_principal(principal, "Identity"))
        }
        (RequestedPrincipal::KubeletIdentity, KubeletIdentity::ObjectId(principal)) => {
            Ok(service_principal(principal.clone(), "OperatorConfig"))
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
            let principal = object_id
                .and_then(|id| PrincipalId::parse(&id).ok())
                .ok_or_else(missing)?;
            Ok(service_principal(principal, "ManagedCluster"))
        }
        (RequestedPrincipal::KubeletIdentity, KubeletIdentity::Unconfigured) => Err(Failure::new(
            ErrorClass::NeedsHuman,
            reasons::NO_PRINCIPAL_CONFIGURED,
            "spec.principal.objectId is not set and acr-attach was started without --kubelet-object-id or --cluster-resource-id; set one of them",
        )),
    }
}

fn source_of(resolved: &[Resolved], principal: &PrincipalId) -> &'static str {
    resolved
        .iter()
        .find(|r| &r.principal == principal)
        .map_or("Spec", |r| r.source)
}

fn show_registry(progress: &mut Progress, desired: &DesiredAttachment, facts: &Facts) {
    let registry = &facts.target.registry;
    progress.status.registry = Some(ResolvedRegistry {
        id: desired.registry.to_string(),
        login_server: registry.login_server.clone(),
        permissions_mode: registry.mode.map(|mode| mode.as_arm().to_string()),
    });
    progress.status.principal = facts.resolved.first().map(|first| ResolvedPrincipal {
        object_id: first.principal.to_string(),
        source: first.source.to_string(),
    });
}

fn show_role(progress: &mut Progress, desired: &DesiredAttachment, wanted: &[Grant]) {
    if let Some(pull) = wanted.iter().find(|g| g.role != PullRole::CatalogLister) {
        progress.status.role = Some(pull.role.short_name().to_string());
        progress.status.role_definition_id =
            Some(pull.role.definition_id(desired.registry.subscription()));
    }
}

fn login_server_refusal(target: &RegistrySnapshot, ctx: &Context) -> Option<Failure> {
    let suffix = ctx.settings.registry_suffix.as_deref()?;
    let login_server = target.registry.login_server.as_deref()?;
    let refused = login_server_allowed(login_server, suffix).err()?;
    Some(Failure::new(
        ErrorClass::NeedsHuman,
        reasons::REGISTRY_NOT_ALLOWED,
        refused.message,
    ))
}

/// PrincipalNotFound is Entra replication lag for a while, then a problem for a human.
fn escalate_missing_principals(ctx: &Context, attachment: &str, reports: &mut [GrantReport]) {
    let missing = reports.iter().any(|report| {
        matches!(&report.state, Err(failure) if failure.reason == reasons::PRINCIPAL_NOT_REPLICATED)
    });
    if !missing {
        ctx.forget_principal_failure(attachment);
        return;
    }
    let missing_for = ctx.principal_failure_age(attachment);
    for report in reports {
        if let Err(failure) = &mut report.state {
            *failure = escalate_principal_not_found(
                failure.clone(),
                missing_for,
                ctx.settings.principal_grace,
            );
        }
    }
}

fn first_pull_assignment(reports: &[GrantReport]) -> Option<AssignmentStatus> {
    let first = reports.first()?;
    let (id, ownership) = first.state.as_ref().ok()?;
    Some(AssignmentStatus {
        id: id.clone(),
        principal_id: first.grant.principal.to_string(),
        role: first.grant.role.short_name().to_string(),
        ownership: *ownership,
    })
}
