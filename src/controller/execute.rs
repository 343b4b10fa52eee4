//! Applies a plan to Azure: every grant first (PUT to create, update a condition in place, or join
//! a co-owned assignment), then — only if all grants stand — the releases (DELETE, or leave a
//! co-owned assignment to its other owners). Runs under the registry locks; ARM calls only,
//! no Kubernetes writes. Keeps the shared listing in step with every write.

use tracing::info;

use crate::azure::{PutOutcome, RoleAssignmentRequest};
use crate::controller::Context;
use crate::crd::{OwnedAssignment, Ownership};
use crate::decide::failure::{Classify, ErrorClass, Failure};
use crate::decide::ownership;
use crate::decide::plan::{GrantStep, Plan, Release, Step, kept_record};
use crate::decide::reasons;
use crate::decide::report::GrantReport;
use crate::model::azure::RoleAssignment;
use crate::model::grant::Grant;
use crate::model::{PrincipalType, RoleAssignmentName};

/// What executing a plan did.
#[derive(Debug, Default)]
pub(super) struct Executed {
    pub reports: Vec<GrantReport>,
    /// Records of assignments that exist and are ours (or co-owned).
    kept: Vec<OwnedAssignment>,
    /// Records to drop: retired, forgotten, or whose PUT was refused (nothing was created).
    dropped: Vec<OwnedAssignment>,
    pub release_failure: Option<Failure>,
    /// One line per release, for the detach event.
    pub released: Vec<String>,
}

impl Executed {
    pub fn record_into(&self, owned: &mut Vec<OwnedAssignment>) {
        owned.retain(|record| !record.is_among(&self.dropped));
        for record in &self.kept {
            if !record.is_among(owned) {
                owned.push(record.clone());
            }
        }
    }
}

pub(super) async fn execute(
    plan: Plan,
    recorded: &[OwnedAssignment],
    ctx: &Context,
    attachment: &str,
) -> Executed {
    let mut executed = Executed::default();
    for step in plan.steps {
        let state = apply_step(&step, recorded, ctx, &mut executed).await;
        if state.is_ok()
            && let Some(record) = kept_record(&step, attachment)
        {
            executed.kept.push(record);
        }
        executed.reports.push(GrantReport {
            grant: step.grant,
            source: "Spec",
            repositories: Vec::new(),
            state,
        });
    }
    // Creates before deletions: with any grant missing, the old ones may be all that works.
    if executed.reports.iter().all(|report| report.state.is_ok()) {
        for release in plan.releases {
            if let Err(failure) = apply_release(release, ctx, attachment, &mut executed).await {
                executed.release_failure = Some(failure);
                break;
            }
        }
    }
    executed
}

async fn apply_step(
    step: &GrantStep,
    recorded: &[OwnedAssignment],
    ctx: &Context,
    executed: &mut Executed,
) -> Result<(String, Ownership), Failure> {
    let grant = &step.grant;
    match &step.step {
        Step::Present {
            assignment_id,
            ownership,
        } => Ok((assignment_id.clone(), *ownership)),
        Step::Put {
            name,
            description,
            record,
        } => {
            if !record.is_among(recorded) {
                return Err(Failure::new(
                    ErrorClass::RetrySoon,
                    reasons::ATTACHING,
                    format!("{grant}: recording the assignment before creating it"),
                ));
            }
            let request = request(grant, name, None, description);
            let existed = ctx
                .reads
                .cached_assignments(&grant.registry)
                .await
                .unwrap_or_default()
                .iter()
                .any(|a| a.name == *name);
            match put(&request, grant, ctx).await {
                Ok(outcome) => {
                    if outcome.1 == Ownership::Adopted && !existed {
                        // ARM refused our name for an equivalent grant: nothing of ours exists.
                        executed.dropped.push(record.clone());
                    }
                    Ok(outcome)
                }
                Err((failure, changed_nothing)) => {
                    if changed_nothing && !existed {
                        executed.dropped.push(record.clone());
                    }
                    Err(failure)
                }
            }
        }
        Step::Join {
            assignment,
            description,
            ..
        } => {
            let request = request(grant, &assignment.name, Some(assignment), description);
            match put(&request, grant, ctx).await {
                Ok((id, _)) => {
                    info!(assignment = %id, "joined another acr-attach installation's role assignment as a co-owner");
                    Ok((id, Ownership::Shared))
                }
                Err((failure, _)) => Err(failure),
            }
        }
    }
}

/// The PUT body for `grant` under `name`; an existing assignment's principalType and condition
/// are kept as ARM has them.
fn request(
    grant: &Grant,
    name: &RoleAssignmentName,
    existing: Option<&RoleAssignment>,
    description: &str,
) -> RoleAssignmentRequest {
    let principal_type = existing
        .and_then(|a| a.principal_type.as_deref())
        .and_then(PrincipalType::from_arm)
        .unwrap_or(grant.principal_type);
    let condition = match existing {
        Some(assignment) => assignment.condition.clone(),
        None => grant.condition.as_ref().map(|c| c.as_str().to_string()),
    };
    RoleAssignmentRequest {
        registry: grant.registry.clone(),
        name: name.clone(),
        principal: grant.principal.clone(),
        principal_type,
        role: grant.role,
        condition,
        description: description.to_string(),
    }
}

/// PUT; on 409 adopt the equivalent assignment that exists under another name. The error side
/// says whether ARM refused outright (nothing was created).
async fn put(
    request: &RoleAssignmentRequest,
    grant: &Grant,
    ctx: &Context,
) -> Result<(String, Ownership), (Failure, bool)> {
    match ctx.azure.put_role_assignment(request).await {
        Ok(PutOutcome::Applied(assignment)) => {
            let id = assignment.id.clone();
            ctx.reads.record_created(&grant.registry, assignment).await;
            Ok((id, Ownership::Created))
        }
        Ok(PutOutcome::AlreadyExists { existing_name }) => {
            let listed = ctx
                .reads
                .relist(&grant.registry, ctx.azure.as_ref())
                .await
                .map_err(|failure| (failure, false))?;
            listed
                .iter()
                .find(|a| grant.is_provided_by(a))
                .map(|existing| (existing.id.clone(), Ownership::Adopted))
                .ok_or_else(|| {
                    let failure = Failure::new(
                        ErrorClass::RetrySoon,
                        reasons::ATTACHING,
                        format!(
                            "Azure reports an equivalent role assignment ({}) that is not listed yet; retrying",
                            existing_name.unwrap_or_else(|| "unnamed".to_string())
                        ),
                    );
                    (failure, true)
                })
        }
        Err(error) => Err((error.classify(), error.changed_nothing())),
    }
}

async fn apply_release(
    release: Release,
    ctx: &Context,
    attachment: &str,
    executed: &mut Executed,
) -> Result<(), Failure> {
    match release {
        Release::Forget { record } => executed.dropped.push(record),
        Release::Delete {
            record,
            assignment_id,
        }
        | Release::Leave {
            record,
            assignment_id,
        } => {
            let done = release_assignment(ctx, attachment, &assignment_id)
                .await
                .map_err(|failure| deleting(&assignment_id, failure))?;
            executed.released.extend(done);
            executed.dropped.push(record);
        }
    }
    Ok(())
}

/// Releases one assignment of ours: deleted when this installation is its only owner, left to the
/// others when another acr-attach installation is listed. The listing the plan used may predate
/// another installation joining, so the owners are read fresh first.
async fn release_assignment(
    ctx: &Context,
    attachment: &str,
    assignment_id: &str,
) -> Result<Option<String>, Failure> {
    let Some(current) = ctx
        .azure
        .get_role_assignment(assignment_id)
        .await
        .map_err(|error| error.classify())?
    else {
        ctx.reads.record_deleted(assignment_id).await;
        return Ok(None);
    };
    let others = ownership::parse(current.description.as_deref())
        .is_some_and(|owners| !owners.without(&ctx.settings.owner).owners.is_empty());
    if others && let Some(grant) = grant_of(&current) {
        leave(ctx, attachment, current, &grant).await?;
        return Ok(Some(format!(
            "left role assignment {assignment_id} to its other acr-attach owners"
        )));
    }
    ctx.azure
        .delete_role_assignment(assignment_id)
        .await
        .map_err(|error| error.classify())?;
    ctx.reads.record_deleted(assignment_id).await;
    info!(attachment, assignment = %assignment_id, "deleted a role assignment acr-attach created");
    Ok(Some(format!("deleted role assignment {assignment_id}")))
}

/// The grant an assignment ARM returned provides (for rewriting it in place); `None` for one
/// that is not a registry-scope pull-role assignment.
fn grant_of(assignment: &RoleAssignment) -> Option<Grant> {
    use crate::model::grant::Condition;
    use crate::model::{PrincipalId, RegistryId};
    let registry = RegistryId::parse(&assignment.scope);
    let principal = PrincipalId::parse(&assignment.principal_id);
    match (registry, principal, assignment.role()) {
        (Ok(registry), Ok(principal), Some(role)) => Some(Grant {
            registry,
            principal,
            principal_type: assignment
                .principal_type
                .as_deref()
                .and_then(PrincipalType::from_arm)
                .unwrap_or_default(),
            role,
            condition: assignment.condition.clone().map(Condition::new),
        }),
        _ => None,
    }
}

fn deleting(assignment_id: &str, failure: Failure) -> Failure {
    Failure {
        message: format!("role assignment {assignment_id}: {}", failure.message),
        ..failure
    }
}

/// Removes this installation from a co-owned assignment's owners, deleting it when nobody else
/// is left. Role assignments have no ETag, so after each write it waits a moment and reads the
/// assignment back: a co-owner leaving at the same time may have written an owner list from
/// before our write (listing us again, or only us), and that is repaired here — nothing leaks
/// and nothing is cut while another owner is listed.
async fn leave(
    ctx: &Context,
    attachment: &str,
    mut current: RoleAssignment,
    grant: &Grant,
) -> Result<(), Failure> {
    let me = &ctx.settings.owner;
    for _ in 0..4 {
        let owners = ownership::parse(current.description.as_deref()).unwrap_or_default();
        if !owners.lists(me) {
            return Ok(());
        }
        let others = owners.without(me);
        if others.owners.is_empty() {
            ctx.azure
                .delete_role_assignment(&current.id)
                .await
                .map_err(|error| error.classify())?;
            ctx.reads.record_deleted(&current.id).await;
            return Ok(());
        }
        let description = ownership::describe(&others, attachment);
        let request = request(grant, &current.name, Some(&current), &description);
        put(&request, grant, ctx)
            .await
            .map_err(|(failure, _)| failure)?;
        tokio::time::sleep(ctx.settings.co_owner_settle).await;
        match ctx
            .azure
            .get_role_assignment(&current.id)
            .await
            .map_err(|error| error.classify())?
        {
            Some(now) => current = now,
            None => return Ok(()),
        }
    }
    Ok(())
}
