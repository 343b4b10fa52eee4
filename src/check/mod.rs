//! `acr-attach check`: the preflight. "Is the right role there for the right identity, and can
//! the operator put it there?", answered from Azure and the cluster with the same flags and
//! environment as `run`, for one registry (`--registry`) or for every `RegistryAttachment`.
//!
//! It only reads: the Entra token request, `GET` of the registry, the AKS cluster (with
//! `--cluster-resource-id`), the role assignments at the registry, the operator identity's own
//! assignments at or above it, and `Microsoft.Authorization/permissions` at the registry; in
//! the cluster, `list` of RegistryAttachments and `get` of the kube-system namespace (owner id).
//! A registry the allow-lists refuse gets no Azure call at all.
//!
//! Per registry it reports: the permissions mode; the role the operator would assign
//! (`decide::plan::choose_role`); whether that assignment exists (created = the name acr-attach
//! derives with this owner id, adopted = an equivalent one under another name, or missing, which
//! is fine when the operator may create it); whether the operator's identity may write it
//! (`roleAssignments/write` by actions/notActions with wildcards; when its only routes carry
//! delegation conditions: "conditioned: only <roles> for <principal types>", evaluated for the
//! role it needs); whether it may delete it later (a warning otherwise); whether the registry is
//! allowed; and, on ABAC registries, an AcrPull assignment for the principal that the registry
//! ignores (a warning).
//!
//! Where the condition comes from, and the subset of the condition language read: see
//! `decide::delegation`. The per-registry verdict is `decide::preflight`; this module owns the
//! flags, the reads above (the I/O), the exit code, and the output (`render`).
//!
//! Exit code: 0 when every checked registry would work (warnings allowed; a missing assignment
//! the operator may create counts as working), 1 when at least one would not, 2 for usage or
//! configuration errors that prevent checking (bad flags, no Kubernetes access, no Azure token).
//! Output goes to stdout; logs to stderr (warn unless `--log-filter`/RUST_LOG say otherwise).
//!
//! `-o json` prints one object; these field names are stable:
//!
//! ```text
//! ok                      bool: every registry would work
//! operatorObjectId        string|null: acr-attach's identity (the token's oid claim)
//! ownerId                 string: the owner id in derived assignment names
//! kubeletIdentity         {source: "flag"|"cluster"|"unconfigured", objectId: string|null}
//! registries[]:
//!   registry              string: resource id as written
//!   name                  string: registry name
//!   attachment            string|null: RegistryAttachment name (null with --registry)
//!   allowed               bool: admitted by the allow-lists and the login-server suffix
//!   loginServer           string|null
//!   permissionsMode       "LegacyRegistryPermissions"|"AbacRepositoryPermissions"|null
//!   role                  "AcrPull"|"RepositoryReader"|null: what the operator would assign
//!   roleDefinitionId      GUID|null
//!   principal             {objectId, source: "spec"|"kubelet"}|null
//!   assignment            {state: "created"|"adopted"|"missing"|"unknown", name, id}
//!   write, delete         {state: "allowed"|"conditioned"|"denied"|"unknown", permitsRole: bool|null,
//!                          conditions: [{roles: [GUID], principalTypes: [string], permitsRole: bool, understood: bool}]}
//!   ok                    bool
//!   problems[], warnings[] {code, message, fix}
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::azure::arm::ArmClient;
use crate::azure::{ArmError, AzureApi};
use crate::cli::RunArgs;
use crate::controller::KubeletIdentity;
use crate::crd::RegistryAttachment;
use crate::decide::allowlist::AllowList;
use crate::decide::failure::Classify;
use crate::decide::preflight::{self, Finding, Located, RegistryFacts, RegistryReport, Target};
use crate::decide::registry_lookup::{self, ListScope};
use crate::decide::validate::{
    self, DesiredAttachment, RegistryTarget, RequestedPrincipal, RequestedRole,
};
use crate::metrics::Metrics;
use crate::model::{OwnerId, PrincipalId, RegistryId};

mod render;

pub use render::{KubeletReport, KubeletSource, Report};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Check this registry (resource id) for the kubelet identity, instead of every
    /// RegistryAttachment in the cluster.
    #[arg(long)]
    pub registry: Option<String>,
    /// `table` for people, `json` for scripts (stable field names).
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// Exit 0: every registry would work; 1: one would not; 2: it could not be checked.
const UNUSABLE: u8 = 2;

pub fn main(args: &CheckArgs) -> ExitCode {
    let filter = args
        .run
        .log_filter
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "warn".to_string());
    crate::telemetry::init(args.run.log_format, Some(&filter));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return unusable(format!("cannot start the async runtime: {e}")),
    };
    let report = match runtime.block_on(check(args)) {
        Ok(report) => report,
        Err(message) => return unusable(message),
    };
    let text = match args.output {
        OutputFormat::Json => match render::json(&report) {
            Ok(text) => text + "\n",
            Err(e) => return unusable(format!("cannot render JSON: {e}")),
        },
        OutputFormat::Table => render::table(&report),
    };
    if let Err(e) = crate::cli::print_stdout(&text) {
        return unusable(format!("cannot write the report: {e}"));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn unusable(message: String) -> ExitCode {
    eprintln!("acr-attach check: {message}");
    ExitCode::from(UNUSABLE)
}

/// Gathers the facts (cluster, then Azure for the registries screening lets through) and
/// evaluates them; `Err` for what prevents checking at all.
pub async fn check(args: &CheckArgs) -> Result<Report, String> {
    let run = &args.run;
    // Everything `run` would refuse at start, check refuses too (exit 2).
    let settings = run.controller_settings(OwnerId::new("unresolved"))?;
    let only = match &args.registry {
        Some(text) => Some(RegistryId::parse(text.trim()).map_err(|e| format!("--registry: {e}"))?),
        None => None,
    };
    let (owner, targets) = read_cluster(run, only).await?;
    let (mut reports, screened) = screen(targets, &settings.allow_list);
    let mut kubelet_identity = KubeletReport {
        source: match &settings.kubelet_identity {
            KubeletIdentity::ObjectId(_) => KubeletSource::Flag,
            KubeletIdentity::FromCluster(_) => KubeletSource::Cluster,
            KubeletIdentity::Unconfigured => KubeletSource::Unconfigured,
        },
        object_id: None,
    };
    let mut operator_object_id = None;
    if !screened.is_empty() {
        let azure = run
            .azure_settings()
            .arm_client(Arc::new(Metrics::default()))
            .map_err(|e| e.to_string())?;
        operator_object_id = caller_object_id(&azure).await?;
        let queued = locate_all(&azure, screened, &mut reports, &settings).await;
        let kubelet = kubelet(&azure, &settings.kubelet_identity, &queued).await;
        kubelet_identity.object_id = kubelet.as_ref().ok().map(ToString::to_string);
        let context = preflight::Context {
            owner: &owner,
            kubelet: &kubelet,
            login_suffix: settings.registry_suffix.as_deref(),
        };
        let operator = operator_object_id.as_deref();
        evaluate_all(&azure, operator, &queued, &mut reports, &context).await;
    }
    Ok(Report {
        ok: reports.iter().all(|r| r.ok),
        operator_object_id,
        owner_id: owner.to_string(),
        kubelet_identity,
        registries: reports,
    })
}

/// A report per target, and the attachments (by report index) that need Azure's answer.
fn screen(
    targets: Vec<Target>,
    allow_list: &AllowList,
) -> (
    Vec<RegistryReport>,
    Vec<(usize, DesiredAttachment<RegistryTarget>)>,
) {
    let mut reports = Vec::new();
    let mut queued = Vec::new();
    for target in targets {
        let (report, desired) = preflight::screen(target, allow_list);
        queued.extend(desired.map(|desired| (reports.len(), desired)));
        reports.push(report);
    }
    (reports, queued)
}

/// Looks up the registries named by name (one list per scope, as the operator reads them) and
/// applies the allow-list to what they resolve to; a failed lookup is its report's problem.
async fn locate_all(
    azure: &ArmClient,
    screened: Vec<(usize, DesiredAttachment<RegistryTarget>)>,
    reports: &mut [RegistryReport],
    settings: &crate::controller::Settings,
) -> Vec<(usize, DesiredAttachment)> {
    let default_subscription = settings.lookup_subscription();
    let mut lists: HashMap<String, Result<Vec<crate::azure::Registry>, ArmError>> = HashMap::new();
    let mut queued = Vec::new();
    for (index, requested) in screened {
        let found = match &requested.registry {
            RegistryTarget::Id(id) => Ok(id.clone()),
            RegistryTarget::Name(lookup) => {
                match registry_lookup::list_scope(lookup, default_subscription.as_deref()) {
                    Err(failure) => Err(Located::Failed(failure)),
                    Ok(scope) => match settings.allow_list.permits_scope(&scope) {
                        Err(refused) => Err(Located::NotAllowed(refused)),
                        Ok(()) => {
                            let listed = list_once(azure, &scope, &mut lists).await;
                            listed
                                .map_err(|error| error.classify())
                                .and_then(|listed| registry_lookup::resolve(lookup, &scope, listed))
                                .map_err(Located::Failed)
                        }
                    },
                }
            }
        };
        let report = &mut reports[index];
        if let Some(desired) = preflight::located(report, requested, found, &settings.allow_list) {
            queued.push((index, desired));
        }
    }
    queued
}

async fn list_once<'a>(
    azure: &ArmClient,
    scope: &ListScope,
    lists: &'a mut HashMap<String, Result<Vec<crate::azure::Registry>, ArmError>>,
) -> Result<&'a [crate::azure::Registry], &'a ArmError> {
    if let std::collections::hash_map::Entry::Vacant(slot) = lists.entry(scope.key()) {
        let listed = azure
            .list_registries(&scope.subscription, scope.resource_group.as_deref())
            .await;
        slot.insert(listed);
    }
    lists[&scope.key()].as_ref().map(Vec::as_slice)
}

/// acr-attach's own object id, from its token; no token means nothing can be checked.
async fn caller_object_id(azure: &ArmClient) -> Result<Option<String>, String> {
    azure.caller_object_id().await.map_err(|e| {
        format!(
            "cannot get an Azure token for acr-attach's identity: {}",
            e.classify().message
        )
    })
}

/// The owner id and what to check. The cluster is read only when needed: with `--registry` and
/// `--owner-id` check runs without Kubernetes access.
async fn read_cluster(
    run: &RunArgs,
    only: Option<RegistryId>,
) -> Result<(OwnerId, Vec<Target>), String> {
    let kube = match (&only, &run.owner_id) {
        (Some(_), Some(_)) => None,
        _ => Some(run.kube_client().await?),
    };
    let owner = match (&run.owner_id, &kube) {
        (Some(owner), _) => OwnerId::new(owner),
        (None, Some(client)) => crate::cli::cluster_owner_id(client).await?,
        (None, None) => unreachable!("a kube client is built whenever --owner-id is absent"),
    };
    let targets = match (only, &kube) {
        (Some(registry), _) => vec![registry_target(registry)],
        (None, Some(client)) => list_targets(client).await?,
        (None, None) => unreachable!("a kube client is built whenever --registry is absent"),
    };
    Ok((owner, targets))
}

/// `--registry`: what an attachment with only `spec.registry` would ask for.
fn registry_target(registry: RegistryId) -> Target {
    Target {
        attachment: None,
        registry_text: registry.to_string(),
        desired: Ok(DesiredAttachment {
            registry: RegistryTarget::Id(registry),
            role: RequestedRole::Auto,
            principals: vec![RequestedPrincipal::KubeletIdentity],
            repositories: Vec::new(),
            catalog_listing: false,
            deletion: validate::Deletion::Delete,
        }),
    }
}

/// Every RegistryAttachment, by name.
async fn list_targets(client: &kube::Client) -> Result<Vec<Target>, String> {
    let api: kube::Api<RegistryAttachment> = kube::Api::all(client.clone());
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| {
            format!(
                "cannot list RegistryAttachments ({e}); check --kubeconfig and that the CRD is installed (`acr-attach crd | kubectl apply -f -`)"
            )
        })?;
    let mut targets: Vec<Target> = list
        .items
        .into_iter()
        .map(|object| Target {
            attachment: object.metadata.name.clone(),
            registry_text: (object.spec.registry.resource_id.clone())
                .or_else(|| object.spec.registry.name.clone())
                .unwrap_or_default(),
            desired: validate::validate(&object.spec).map_err(|errors| validate::describe(&errors)),
        })
        .collect();
    targets.sort_by(|a, b| a.attachment.cmp(&b.attachment));
    Ok(targets)
}

/// The kubelet identity, read from the AKS cluster only when an attachment checked needs it.
async fn kubelet(
    azure: &ArmClient,
    configured: &KubeletIdentity,
    queued: &[(usize, DesiredAttachment)],
) -> Result<PrincipalId, Finding> {
    let needed = (queued.iter())
        .any(|(_, d)| d.principals.first() == Some(&RequestedPrincipal::KubeletIdentity));
    match configured {
        KubeletIdentity::ObjectId(id) => Ok(id.clone()),
        KubeletIdentity::FromCluster(cluster) if needed => {
            preflight::kubelet_from_cluster(cluster, azure.get_kubelet_identity(cluster).await)
        }
        KubeletIdentity::FromCluster(_) => Err(preflight::kubelet_not_read()),
        KubeletIdentity::Unconfigured => Err(preflight::kubelet_unconfigured()),
    }
}

/// Reads each registry once (attachments may share one) and evaluates every queued report.
async fn evaluate_all(
    azure: &ArmClient,
    operator: Option<&str>,
    queued: &[(usize, DesiredAttachment)],
    reports: &mut [RegistryReport],
    context: &preflight::Context<'_>,
) {
    let mut facts: HashMap<String, Result<RegistryFacts, ArmError>> = HashMap::new();
    for (index, desired) in queued {
        let key = desired.registry.key();
        if !facts.contains_key(&key) {
            let read = read_registry(azure, &desired.registry, operator).await;
            facts.insert(key.clone(), read);
        }
        preflight::evaluate(&mut reports[*index], desired, &facts[&key], context);
    }
}

/// Everything check reads about one registry; nothing more once its `GET` fails.
async fn read_registry(
    azure: &ArmClient,
    registry: &RegistryId,
    operator: Option<&str>,
) -> Result<RegistryFacts, ArmError> {
    let read = azure.get_registry(registry).await?;
    let assignments = azure.list_role_assignments(registry).await;
    let permissions = azure.list_permissions(registry.as_str()).await;
    let own = match operator {
        Some(oid) => Some(azure.list_role_assignments_of(registry.as_str(), oid).await),
        None => None,
    };
    Ok(RegistryFacts {
        registry: read,
        assignments,
        permissions,
        own,
    })
}
