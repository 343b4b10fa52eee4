//! The binary's commands: `crd` prints the CRD, `run` runs the operator against a cluster and
//! Azure. Flags are also read from environment variables (for the Helm chart), secrets only from
//! the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::Secret;
use azure_core::http::Url;
use clap::{Args, Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing::{error, info};

use crate::azure::credential::{AzureSettings, Cloud, CredentialKind};
use crate::controller::leader::LeaseSettings;
use crate::controller::{self, KubeletIdentity, Settings};
use crate::decide::allowlist::AllowList;
use crate::metrics::Metrics;
use crate::model::{ClusterId, OwnerId, PrincipalId};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "acr-attach",
    version,
    about = "Keeps AKS kubelet identities attached to Azure Container Registries"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the RegistryAttachment CustomResourceDefinition as YAML.
    Crd,
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Preflight: would attaching work? Reads Azure and the cluster, never writes; exit 0 only
    /// when everything would work.
    Check(Box<crate::check::CheckArgs>),
    /// Run the operator against an embedded Kubernetes API emulator and ARM emulator, with the
    /// examples applied; drive it with kubectl.
    #[cfg(feature = "sandbox")]
    Sandbox(crate::sandbox::SandboxArgs),
}

/// A duration such as "90s", "10m", "1h30m" (jiff's friendly format, or ISO 8601 "PT1H30M"), or
/// plain seconds; at least one second, so no setting can make the operator spin against ARM.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_any_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err(format!("{text:?} is too short: use at least 1s"));
    }
    Ok(duration)
}

fn parse_any_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is too large a number of seconds"))?;
        return Ok(Duration::from_secs(seconds));
    }
    let signed: jiff::SignedDuration = text.parse().map_err(|error| {
        format!("{text:?} is not a duration ({error}): use e.g. 30s, 10m or 1h30m")
    })?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} is negative: use e.g. 30s"))
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kubeconfig to use instead of in-cluster config / $KUBECONFIG.
    #[arg(long, env = "ACR_ATTACH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Object id of the kubelet identity, the default principal of every attachment.
    #[arg(
        long,
        env = "ACR_ATTACH_KUBELET_OBJECT_ID",
        conflicts_with = "cluster_resource_id"
    )]
    pub kubelet_object_id: Option<String>,
    /// AKS cluster resource id; the kubelet identity is read from it once per resync window.
    #[arg(long, env = "ACR_ATTACH_CLUSTER_RESOURCE_ID")]
    pub cluster_resource_id: Option<String>,

    /// This installation's identity, part of every role assignment name it derives, so that
    /// clusters sharing a principal never delete each other's grants. Default: the UID of the
    /// kube-system namespace.
    #[arg(long, env = "ACR_ATTACH_OWNER_ID")]
    pub owner_id: Option<String>,

    /// How often each attachment is verified against Azure (jittered up to +10%).
    #[arg(long, env = "ACR_ATTACH_RESYNC", default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,
    /// How long PrincipalNotFound is treated as Entra replication lag before it is reported Stalled.
    #[arg(long, env = "ACR_ATTACH_PRINCIPAL_GRACE", default_value = "10m", value_parser = parse_duration)]
    pub principal_grace: Duration,
    /// Retry interval for problems that need a human (Stalled).
    #[arg(long, env = "ACR_ATTACH_STALLED_RETRY", default_value = "5m", value_parser = parse_duration)]
    pub stalled_retry: Duration,
    /// The longest one reconcile may take; past it the reconcile is dropped and retried.
    #[arg(long, env = "ACR_ATTACH_RECONCILE_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub reconcile_timeout: Duration,
    /// After leaving a role assignment shared with another acr-attach installation, how long to
    /// wait before reading it back (repairs a co-owner's write that crossed ours).
    #[arg(long, env = "ACR_ATTACH_CO_OWNER_SETTLE", default_value = "3s", value_parser = parse_duration)]
    pub co_owner_settle: Duration,
    /// How old status.lastSyncTime may get before a verification that changes nothing rewrites
    /// it; until then a quiet resync window makes no Kubernetes write.
    #[arg(long, env = "ACR_ATTACH_SYNC_TIME_REFRESH", default_value = "1h", value_parser = parse_duration)]
    pub sync_time_refresh: Duration,

    /// How acr-attach authenticates to Azure.
    #[arg(
        long,
        env = "ACR_ATTACH_CREDENTIAL",
        value_enum,
        default_value = "workload-identity"
    )]
    pub credential: CredentialKind,
    /// Client id of the operator's identity (workload identity, client secret, or a user-assigned managed identity).
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Entra tenant of the operator's identity.
    #[arg(long, env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Projected service-account token for workload identity.
    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE")]
    pub federated_token_file: Option<PathBuf>,
    /// Azure cloud: sets the ARM endpoint and the authority host.
    #[arg(
        long,
        env = "ACR_ATTACH_CLOUD",
        value_enum,
        default_value = "AzurePublic"
    )]
    pub cloud: Cloud,
    /// Override the ARM endpoint (Azure Stack Hub, the emulator).
    #[arg(long, env = "ACR_ATTACH_ARM_ENDPOINT")]
    pub arm_endpoint: Option<Url>,
    /// Token audience for ARM when it differs from the endpoint (Azure Stack Hub's
    /// activeDirectoryServiceEndpointResourceId, or an endpoint behind another hostname).
    #[arg(long, env = "ACR_ATTACH_ARM_AUDIENCE")]
    pub arm_audience: Option<String>,
    /// Override the Entra authority host (must be https).
    #[arg(long, env = "AZURE_AUTHORITY_HOST")]
    pub authority_host: Option<Url>,
    /// Extra PEM CA bundle to trust for Azure calls (a corporate TLS proxy).
    #[arg(long, env = "ACR_ATTACH_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,

    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "ACR_ATTACH_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    #[arg(
        long,
        env = "ACR_ATTACH_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    /// tracing filter, e.g. "info" or "acr_attach=debug" (default: RUST_LOG, else info).
    #[arg(long, env = "ACR_ATTACH_LOG_FILTER")]
    pub log_filter: Option<String>,

    /// Where a registry named by `spec.registry.name` without `subscriptionId` is looked up
    /// (a subscription GUID). Default: the subscription of --cluster-resource-id.
    #[arg(long, env = "ACR_ATTACH_DEFAULT_SUBSCRIPTION")]
    pub default_subscription: Option<String>,

    /// Only registries in these subscriptions (comma-separated GUIDs); empty: any.
    #[arg(long, env = "ACR_ATTACH_ALLOWED_SUBSCRIPTIONS", value_delimiter = ',')]
    pub allowed_subscriptions: Vec<String>,
    /// Only registries in these resource groups (comma-separated `<subscriptionId>/<resourceGroup>`); empty: any.
    #[arg(
        long,
        env = "ACR_ATTACH_ALLOWED_RESOURCE_GROUPS",
        value_delimiter = ','
    )]
    pub allowed_resource_groups: Vec<String>,
    /// Only these registries (comma-separated resource ids); empty: any.
    #[arg(long, env = "ACR_ATTACH_ALLOWED_REGISTRIES", value_delimiter = ',')]
    pub allowed_registries: Vec<String>,
    /// Login servers must end with this suffix (default: the cloud's, e.g. .azurecr.io); "" skips the check.
    #[arg(long, env = "ACR_ATTACH_REGISTRY_SUFFIX")]
    pub registry_suffix: Option<String>,

    /// Elect a leader among replicas on a coordination.k8s.io Lease; only the leader reconciles.
    #[arg(long, env = "ACR_ATTACH_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "ACR_ATTACH_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    #[arg(
        long,
        env = "ACR_ATTACH_LEADER_ELECTION_LEASE_NAME",
        default_value = "acr-attach"
    )]
    pub leader_election_lease_name: String,
    /// How long a lease is valid without renewal: the longest a standby waits after a leader dies.
    #[arg(long, env = "ACR_ATTACH_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,
    /// A leader that could not renew for this long stops reconciling (before its lease can expire).
    #[arg(long, env = "ACR_ATTACH_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,
    /// How often contenders try to acquire or renew.
    #[arg(long, env = "ACR_ATTACH_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,

    /// On SIGTERM, how long in-flight reconciles may take before the process exits anyway.
    #[arg(long, env = "ACR_ATTACH_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl RunArgs {
    pub fn azure_settings(&self) -> AzureSettings {
        AzureSettings {
            cloud: self.cloud,
            arm_endpoint: self.arm_endpoint.clone(),
            arm_audience: self.arm_audience.clone(),
            authority_host: self.authority_host.clone(),
            extra_ca_file: self.extra_ca_file.clone(),
            credential: self.credential,
            client_id: self.client_id.clone(),
            tenant_id: self.tenant_id.clone(),
            // Secrets only from the environment, never a flag visible in `ps`.
            client_secret: std::env::var("AZURE_CLIENT_SECRET").ok().map(Secret::new),
            federated_token_file: self.federated_token_file.clone(),
            instance: std::env::var("POD_NAME").ok(),
        }
    }

    pub fn controller_settings(&self, owner: OwnerId) -> Result<Settings, String> {
        let kubelet_identity = match (&self.kubelet_object_id, &self.cluster_resource_id) {
            (Some(object_id), _) => KubeletIdentity::ObjectId(
                PrincipalId::parse(object_id).map_err(|e| format!("--kubelet-object-id: {e}"))?,
            ),
            (None, Some(cluster)) => KubeletIdentity::FromCluster(
                ClusterId::parse(cluster).map_err(|e| format!("--cluster-resource-id: {e}"))?,
            ),
            (None, None) => KubeletIdentity::Unconfigured,
        };
        let default_subscription = match self.default_subscription.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if crate::model::is_subscription_id(text) => Some(text.to_ascii_lowercase()),
            Some(text) => {
                return Err(format!(
                    "--default-subscription: {text:?} is not a subscription id (a GUID, `az account show --query id -o tsv`)"
                ));
            }
        };
        Ok(Settings {
            default_subscription,
            resync: self.resync,
            principal_grace: self.principal_grace,
            stalled_retry: self.stalled_retry,
            reconcile_deadline: self.reconcile_timeout,
            co_owner_settle: self.co_owner_settle,
            sync_time_refresh: self.sync_time_refresh,
            allow_list: self.allow_list()?,
            registry_suffix: self.registry_suffix(),
            ..Settings::new(kubelet_identity, owner)
        })
    }

    /// The Lease to elect a leader on, when --leader-election is on.
    pub fn lease_settings(&self) -> Result<Option<LeaseSettings>, String> {
        if !self.leader_election {
            return Ok(None);
        }
        let namespace = self
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|namespace| !namespace.trim().is_empty())
            .unwrap_or_else(|| "default".to_string());
        let lease = LeaseSettings {
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
            ..LeaseSettings::new(
                namespace,
                &self.leader_election_lease_name,
                crate::controller::leader::default_identity(),
            )
        };
        lease.validate()?;
        Ok(Some(lease))
    }

    pub fn allow_list(&self) -> Result<AllowList, String> {
        AllowList::new(
            &self.allowed_subscriptions,
            &self.allowed_resource_groups,
            &self.allowed_registries,
        )
    }

    /// The login-server suffix to enforce: the flag's (empty disables), else the cloud's.
    pub fn registry_suffix(&self) -> Option<String> {
        match self.registry_suffix.as_deref().map(str::trim) {
            Some("") => None,
            Some(suffix) => Some(suffix.to_string()),
            None => Some(self.cloud.registry_suffix().to_string()),
        }
    }

    pub async fn kube_client(&self) -> Result<kube::Client, String> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
            }
            None => kube::Config::infer().await.map_err(|e| {
                format!("no Kubernetes configuration found ({e}); pass --kubeconfig")
            })?,
        };
        let mut config = config;
        // Named in the API server's audit log (and the emulator's request log) as itself.
        config.headers.push((
            axum::http::header::USER_AGENT,
            axum::http::HeaderValue::from_str(&user_agent())
                .map_err(|e| format!("user agent: {e}"))?,
        ));
        kube::Client::try_from(config)
            .map_err(|e| format!("cannot build the Kubernetes client: {e}"))
    }
}

/// `acr-attach/<version>`, with the replica (`$POD_NAME`) when known.
pub fn user_agent() -> String {
    match std::env::var("POD_NAME")
        .ok()
        .filter(|pod| !pod.trim().is_empty())
    {
        Some(pod) => format!("acr-attach/{} ({pod})", env!("CARGO_PKG_VERSION")),
        None => format!("acr-attach/{}", env!("CARGO_PKG_VERSION")),
    }
}

/// The UID of the kube-system namespace: stable for the life of a cluster and unique to it.
pub async fn cluster_owner_id(client: &kube::Client) -> Result<OwnerId, String> {
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    let namespace = namespaces.get("kube-system").await.map_err(|e| {
        format!(
            "cannot read the kube-system namespace to identify this cluster ({e}); allow get on namespaces/kube-system or pass --owner-id"
        )
    })?;
    namespace
        .metadata
        .uid
        .map(OwnerId::new)
        .ok_or_else(|| "the kube-system namespace has no uid; pass --owner-id".to_string())
}

/// Runs the operator until `shutdown` resolves; configuration errors come back as text. Losing
/// leadership is an error too: the process must exit and come back as a standby.
pub async fn run_operator(
    args: &RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    // Refuse bad flags before touching anything.
    args.controller_settings(OwnerId::new("unresolved"))?;
    let election = args.lease_settings()?;
    let metrics = Arc::new(Metrics::default());
    let azure = args
        .azure_settings()
        .arm_client(metrics.clone())
        .map_err(|e| e.to_string())?;
    // Bind before anything slow, so a port already in use fails the start instead of leaving a
    // pod that can never pass its probes.
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("--metrics-addr {}: {e}", args.metrics_addr))?;
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving /metrics, /healthz and /readyz");
    }
    let client = args.kube_client().await?;
    let owner = match &args.owner_id {
        Some(owner) => OwnerId::new(owner),
        None => cluster_owner_id(&client).await?,
    };
    let settings = args.controller_settings(owner)?;
    if settings.resync < Duration::from_secs(60) {
        tracing::warn!(resync = ?settings.resync, "a resync shorter than a minute reads ARM often; 10m is the default");
    }
    let served = metrics.clone();
    let readiness = Arc::new(crate::http::Readiness::default());
    let reported = readiness.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::http::serve_on(listener, served, reported).await {
            error!(error = %e, "metrics endpoint failed");
        }
    });
    info!(
        resync = ?settings.resync,
        kubelet = %settings.kubelet_identity,
        credential = ?args.credential,
        leader_election = election.is_some(),
        "starting"
    );
    let options = controller::RunOptions {
        instance: std::env::var("POD_NAME").ok(),
        election,
        shutdown_grace: args.shutdown_grace,
    };
    match controller::run(
        client,
        Arc::new(azure),
        settings,
        metrics,
        readiness,
        options,
        shutdown,
    )
    .await
    {
        controller::Stopped::Shutdown => Ok(()),
        controller::Stopped::LostLeadership => {
            Err("lost leadership to another replica; exiting to restart as a standby".to_string())
        }
        controller::Stopped::ElectionRefused => Err("leader election did not start".to_string()),
    }
}

/// Writes a command's output. A reader that stops early (`acr-attach crd | head`) closes the pipe:
/// that is not an error, and must not panic as `print!` would.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("acr-attach: cannot start the async runtime: {e}");
            None
        }
    }
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(crate::sandbox::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("acr-attach sandbox: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => crate::check::main(&args),
        Command::Crd => match print_stdout(&crate::crd::crd_yaml()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("acr-attach crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            telemetry::init(args.log_format, args.log_filter.as_deref());
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(run_operator(&args, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(problem) => {
                    // The one report of a startup failure: a single structured line (JSON or
                    // text, as configured) on stderr.
                    error!(error = %problem, "cannot start");
                    ExitCode::from(2)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("ten minutes").is_err());
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("PT2M"), Ok(Duration::from_secs(120)));
        assert!(
            parse_duration("99999999999999999999999").is_err(),
            "overflow"
        );
        assert!(parse_duration("9999999999999999999h").is_err(), "overflow");
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("0s").is_err(), "a zero period would spin");
    }

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["acr-attach", "run"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Run(args) => *args,
            _ => unreachable!("parsed a run command"),
        })
    }

    #[test]
    fn flag_defaults_are_the_controller_defaults() {
        let args = run_args(&[]).unwrap();
        assert_eq!(args.resync, crate::controller::DEFAULT_RESYNC);
        assert_eq!(
            args.principal_grace,
            crate::controller::DEFAULT_PRINCIPAL_GRACE
        );
        assert_eq!(args.stalled_retry, crate::controller::DEFAULT_STALLED_RETRY);
        assert_eq!(
            args.reconcile_timeout,
            crate::controller::DEFAULT_RECONCILE_DEADLINE
        );
        assert_eq!(
            args.co_owner_settle,
            crate::controller::DEFAULT_CO_OWNER_SETTLE
        );
        assert_eq!(
            args.sync_time_refresh,
            crate::controller::DEFAULT_SYNC_TIME_REFRESH
        );
    }

    #[test]
    fn clouds_and_credentials_are_selected_by_name() {
        let args =
            run_args(&["--cloud", "AzureUSGovernment", "--credential", "azure-cli"]).unwrap();
        assert_eq!(args.cloud, Cloud::AzureUsGovernment);
        assert_eq!(args.credential, CredentialKind::AzureCli);
        assert_eq!(
            args.azure_settings().arm_endpoint().unwrap().as_str(),
            "https://management.usgovcloudapi.net/"
        );
    }

    #[test]
    fn the_kubelet_identity_comes_from_one_source_only() {
        let both = run_args(&[
            "--kubelet-object-id",
            "11111111-1111-1111-1111-111111111111",
            "--cluster-resource-id",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks",
        ]);
        assert!(both.is_err());
        let bad = run_args(&["--kubelet-object-id", "kubelet"]).unwrap();
        let error = bad.controller_settings(OwnerId::new("o")).unwrap_err();
        assert!(error.starts_with("--kubelet-object-id"), "{error}");
    }

    #[test]
    fn names_are_looked_up_in_the_default_subscription_else_the_clusters() {
        let cluster = "/subscriptions/00000000-0000-0000-0000-0000000000AA/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks";
        let owner = || OwnerId::new("o");
        let from_cluster = run_args(&["--cluster-resource-id", cluster]).unwrap();
        assert_eq!(
            from_cluster
                .controller_settings(owner())
                .unwrap()
                .lookup_subscription()
                .as_deref(),
            Some("00000000-0000-0000-0000-0000000000aa")
        );
        let explicit = run_args(&[
            "--cluster-resource-id",
            cluster,
            "--default-subscription",
            "00000000-0000-0000-0000-0000000000BB",
        ])
        .unwrap();
        assert_eq!(
            explicit
                .controller_settings(owner())
                .unwrap()
                .lookup_subscription()
                .as_deref(),
            Some("00000000-0000-0000-0000-0000000000bb")
        );
        let neither = run_args(&[]).unwrap();
        assert_eq!(
            neither
                .controller_settings(owner())
                .unwrap()
                .lookup_subscription(),
            None
        );
        let bad = run_args(&["--default-subscription", "prod"]).unwrap();
        let error = bad.controller_settings(owner()).unwrap_err();
        assert!(error.starts_with("--default-subscription"), "{error}");
    }

    #[test]
    fn a_credential_missing_its_settings_names_the_flag() {
        let args = run_args(&["--credential", "client-secret", "--client-id", "abc"]).unwrap();
        let mut settings = args.azure_settings();
        settings.tenant_id = None;
        let error = settings
            .arm_client(std::sync::Arc::new(Metrics::default()))
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("--tenant-id"), "{error}");
    }
}
