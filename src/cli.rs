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
use crate::controller::{self, KubeletIdentity, Settings};
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
    /// Run the operator against an embedded Kubernetes API emulator and ARM emulator, with the
    /// examples applied; drive it with kubectl.
    #[cfg(feature = "sandbox")]
    Sandbox(crate::sandbox::SandboxArgs),
}

/// "90s", "10m", "1h" or plain seconds; at least one second, so no setting can make the
/// operator spin against ARM.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_any_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err(format!("{text:?} is too short: use at least 1s"));
    }
    Ok(duration)
}

fn parse_any_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use e.g. 30s, 10m or 1h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
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
        Ok(Settings {
            resync: self.resync,
            principal_grace: self.principal_grace,
            stalled_retry: self.stalled_retry,
            ..Settings::new(kubelet_identity, owner)
        })
    }

    async fn kube_client(&self) -> Result<kube::Client, String> {
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
        kube::Client::try_from(config)
            .map_err(|e| format!("cannot build the Kubernetes client: {e}"))
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

/// Runs the operator until `shutdown` resolves; configuration errors come back as text.
pub async fn run_operator(
    args: &RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    // Refuse bad flags before touching anything.
    args.controller_settings(OwnerId::new("unresolved"))?;
    let metrics = Arc::new(Metrics::default());
    let azure = args
        .azure_settings()
        .arm_client(metrics.clone())
        .map_err(|e| e.to_string())?;
    let client = args.kube_client().await?;
    let owner = match &args.owner_id {
        Some(owner) => OwnerId::new(owner),
        None => cluster_owner_id(&client).await?,
    };
    let settings = args.controller_settings(owner)?;
    if settings.resync < Duration::from_secs(60) {
        tracing::warn!(resync = ?settings.resync, "a resync shorter than a minute reads ARM often; 10m is the default");
    }
    let metrics_addr = args.metrics_addr;
    let served = metrics.clone();
    let readiness = Arc::new(crate::http::Readiness::default());
    let reported = readiness.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::http::serve(metrics_addr, served, reported).await {
            error!(address = %metrics_addr, error = %e, "metrics endpoint failed");
        }
    });
    info!(
        resync = ?settings.resync,
        kubelet = %settings.kubelet_identity,
        credential = ?args.credential,
        "starting"
    );
    let instance = std::env::var("POD_NAME").ok();
    controller::run(
        client,
        Arc::new(azure),
        settings,
        metrics,
        readiness,
        instance,
        shutdown,
    )
    .await;
    Ok(())
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
        Command::Crd => {
            print!("{}", crate::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            telemetry::init(args.log_format, args.log_filter.as_deref());
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(run_operator(&args, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    error!(%message, "cannot start");
                    eprintln!("acr-attach: {message}");
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
