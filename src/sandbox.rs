//! `acr-attach sandbox`: the operator at work with no cluster and no Azure at hand. Starts the
//! Kubernetes API emulator and the ARM emulator, writes a kubeconfig for kubectl, installs the CRD,
//! applies the examples, runs the real operator against both (the same code as `run`, only the
//! endpoints differ), and shows attachments and the role assignments in the emulated tenant.
//! Built only with the default `sandbox` feature; release images leave the emulators out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arm_emulator::{ArmEmulator, TenantConfig};
use clap::Args;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResourceExt, ResourceExt};
use kube_emulator::KubeEmulator;

use crate::azure::credential::{AzureSettings, Cloud, CredentialKind};
use crate::cli::parse_duration;
use crate::controller::{self, KubeletIdentity, Settings};
use crate::crd::RegistryAttachment;
use crate::metrics::Metrics;
use crate::model::ClusterId;

/// The default emulated tenant; also shipped as a file to copy for `--tenant`.
pub const DEFAULT_TENANT: &str = include_str!("../sandbox/tenant.yaml");
/// The examples applied at start, in order.
pub const EXAMPLES: [(&str, &str); 5] = [
    (
        "examples/plain-registry.yaml",
        include_str!("../examples/plain-registry.yaml"),
    ),
    (
        "examples/abac-registry.yaml",
        include_str!("../examples/abac-registry.yaml"),
    ),
    (
        "examples/explicit-principal.yaml",
        include_str!("../examples/explicit-principal.yaml"),
    ),
    (
        "examples/repository-scopes.yaml",
        include_str!("../examples/repository-scopes.yaml"),
    ),
    (
        "examples/registry-by-name.yaml",
        include_str!("../examples/registry-by-name.yaml"),
    ),
];

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Where to write the kubeconfig for kubectl (default: a new temporary directory).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// YAML description of the emulated Azure tenant (see sandbox/tenant.yaml).
    #[arg(long)]
    pub tenant: Option<PathBuf>,
    /// Exit after convergence: 0 when every example is Ready and its role assignment exists.
    #[arg(long)]
    pub once: bool,
    /// How long --once waits for convergence.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Serve the emulated cluster and Azure only; run `acr-attach run` yourself (the command is printed).
    #[arg(long)]
    pub no_operator: bool,
    /// Do not apply the examples.
    #[arg(long)]
    pub no_examples: bool,
    /// Resync period of the embedded operator (short, so drift repair is visible).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,
    /// Fixed port for the Kubernetes API emulator (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub kube_port: u16,
    /// Fixed port for the ARM emulator (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub arm_port: u16,
    /// Operator log filter (logs go to stderr).
    #[arg(long, default_value = "warn")]
    pub log_filter: String,
}

/// The running sandbox: both emulators and the files a user (or a test) needs to reach them.
pub struct Sandbox {
    pub kube: KubeEmulator,
    pub arm: ArmEmulator,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub ca_file: PathBuf,
    pub tenant: TenantConfig,
    /// Keep `dir` on exit: the user chose where the kubeconfig goes (and may reuse the files).
    keep_dir: bool,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn load_tenant(path: Option<&Path>) -> Result<TenantConfig, String> {
    let (text, origin) = match path {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("--tenant {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            DEFAULT_TENANT.to_string(),
            "the built-in tenant".to_string(),
        ),
    };
    serde_saphyr::from_str(&text).map_err(|e| format!("{origin}: {e}"))
}

/// A directory of its own for each sandbox (tests run several in one process).
fn scratch_dir() -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("acr-attach-sandbox-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

impl Sandbox {
    pub async fn start(
        tenant: TenantConfig,
        kubeconfig: Option<PathBuf>,
        kube_port: u16,
        arm_port: u16,
    ) -> Result<Sandbox, String> {
        crate::install_crypto_provider();
        let localhost = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let arm = ArmEmulator::start_on(tenant.clone(), localhost(arm_port))
            .await
            .map_err(|e| format!("ARM emulator: {e}"))?;
        let kube = KubeEmulator::start_on(localhost(kube_port))
            .await
            .map_err(|e| format!("Kubernetes API emulator: {e}"))?;
        let dir = scratch_dir()?;
        let keep_dir = kubeconfig.is_some();
        let kubeconfig = kubeconfig.unwrap_or_else(|| dir.join("kubeconfig"));
        if let Some(parent) = kubeconfig.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        kube.write_kubeconfig(&kubeconfig)
            .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
        let ca_file = dir.join("azure-ca.pem");
        std::fs::write(&ca_file, arm.ca_pem())
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        Ok(Sandbox {
            kube,
            arm,
            dir,
            kubeconfig,
            ca_file,
            tenant,
            keep_dir,
        })
    }

    pub async fn client(&self) -> Result<kube::Client, String> {
        let kubeconfig =
            Kubeconfig::from_yaml(&self.kube.kubeconfig_yaml()).map_err(|e| e.to_string())?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// Azure settings for an operator signing in to the emulated tenant with a client secret.
    pub fn azure_settings(&self) -> Result<AzureSettings, String> {
        let operator = self.arm.operator_identity();
        let endpoint =
            azure_core::http::Url::parse(&self.arm.endpoint()).map_err(|e| e.to_string())?;
        Ok(AzureSettings {
            cloud: Cloud::AzurePublic,
            arm_endpoint: Some(endpoint.clone()),
            arm_audience: None,
            authority_host: Some(endpoint),
            extra_ca_file: Some(self.ca_file.clone()),
            credential: CredentialKind::ClientSecret,
            client_id: Some(operator.client_id),
            tenant_id: Some(self.arm.tenant_id()),
            client_secret: operator
                .client_secret
                .map(azure_core::credentials::Secret::new),
            federated_token_file: None,
            instance: None,
        })
    }

    /// The kubelet identity source: the first emulated cluster.
    pub fn kubelet_identity(&self) -> Result<KubeletIdentity, String> {
        match self.tenant.clusters.first() {
            Some(cluster) => ClusterId::parse(&cluster.id)
                .map(KubeletIdentity::FromCluster)
                .map_err(|e| format!("tenant cluster id: {e}")),
            None => Ok(KubeletIdentity::Unconfigured),
        }
    }

    /// The `acr-attach run` command line that drives this sandbox from another terminal.
    pub fn run_command(&self) -> String {
        self.command(
            "run",
            " \\\n    --metrics-addr 127.0.0.1:8080 --log-format text",
        )
    }

    /// `acr-attach check` against this sandbox: the same flags as `run`, read-only.
    pub fn check_command(&self) -> String {
        self.command("check", "")
    }

    /// A command line of the binary with the flags that reach this sandbox's emulators.
    fn command(&self, subcommand: &str, extra: &str) -> String {
        let operator = self.arm.operator_identity();
        let cluster = self
            .tenant
            .clusters
            .first()
            .map(|c| format!(" \\\n    --cluster-resource-id {}", c.id))
            .unwrap_or_default();
        format!(
            "AZURE_CLIENT_SECRET={secret} cargo run --release -- {subcommand} \\\n    --kubeconfig {kubeconfig} \\\n    --credential client-secret --client-id {client} --tenant-id {tenant} \\\n    --arm-endpoint {endpoint} --authority-host {endpoint} \\\n    --extra-ca-file {ca}{cluster}{extra}",
            secret = operator.client_secret.unwrap_or_default(),
            kubeconfig = self.kubeconfig.display(),
            client = operator.client_id,
            tenant = self.arm.tenant_id(),
            endpoint = self.arm.endpoint(),
            ca = self.ca_file.display(),
        )
    }
}

/// Creates the CRD and waits until the API server serves it.
pub async fn install_crd(client: &kube::Client) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = RegistryAttachment::crd();
    let name = crd.name_any();
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(e) => return Err(format!("installing the CRD: {e}")),
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .map_err(|_| "the CRD did not become Established".to_string())?
    .map_err(|e| format!("waiting for the CRD: {e}"))?;
    Ok(())
}

/// Parses the example manifests into objects.
pub fn example_attachments() -> Result<Vec<RegistryAttachment>, String> {
    EXAMPLES
        .iter()
        .map(|(path, text)| serde_saphyr::from_str(text).map_err(|e| format!("{path}: {e}")))
        .collect()
}

pub async fn apply_examples(client: &kube::Client) -> Result<Vec<String>, String> {
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let mut names = Vec::new();
    for attachment in example_attachments()? {
        let name = attachment.name_any();
        match api.create(&PostParams::default(), &attachment).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(e) => return Err(format!("applying {name}: {e}")),
        }
        names.push(name);
    }
    Ok(names)
}

fn ready_of(attachment: &RegistryAttachment) -> (String, String, String) {
    attachment
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_else(|| ("Unknown".to_string(), "Pending".to_string(), String::new()))
}

/// Both tables: attachments with their conditions, and the emulated tenant's role assignments.
pub fn render(attachments: &[RegistryAttachment], arm: &ArmEmulator) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<18} {:<26} {:<17} {:<7} {:<22} {}\n",
        "ATTACHMENT", "REGISTRY", "ROLE", "READY", "REASON", "OWNERSHIP"
    ));
    for attachment in attachments {
        let status = attachment.status.clone().unwrap_or_default();
        let (ready, reason, _) = ready_of(attachment);
        out.push_str(&format!(
            "{:<18} {:<26} {:<17} {:<7} {:<22} {}\n",
            attachment.name_any(),
            status
                .registry
                .and_then(|r| r.login_server)
                .unwrap_or_else(|| "-".into()),
            status.role.unwrap_or_else(|| "-".into()),
            ready,
            reason,
            status
                .assignment
                .map(|a| format!("{:?}", a.ownership))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out.push_str("\nROLE ASSIGNMENTS IN EMULATED AZURE\n");
    out.push_str(&format!(
        "{:<12} {:<38} {:<38} {}\n",
        "REGISTRY", "ROLE", "PRINCIPAL", "CREATED BY"
    ));
    for assignment in arm.role_assignments() {
        let role = crate::model::PullRole::from_definition_id(&assignment.role_definition_id)
            .map(|r| r.display_name().to_string())
            .unwrap_or_else(|| assignment.role_definition_guid().to_string());
        let registry = assignment
            .scope
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let creator = if assignment
            .created_by
            .eq_ignore_ascii_case(&arm.operator_identity().object_id)
        {
            "acr-attach".to_string()
        } else {
            assignment.created_by.clone()
        };
        out.push_str(&format!(
            "{:<12} {:<38} {:<38} {}\n",
            registry, role, assignment.principal_id, creator
        ));
    }
    out
}

/// Why the sandbox has not converged, or `None` when every named attachment is Ready and its
/// recorded role assignment exists in the emulated tenant.
pub fn not_converged(
    attachments: &[RegistryAttachment],
    names: &[String],
    arm: &ArmEmulator,
) -> Option<String> {
    let assignments = arm.role_assignments();
    let mut problems = Vec::new();
    for name in names {
        let Some(attachment) = attachments.iter().find(|a| &a.name_any() == name) else {
            problems.push(format!("{name}: missing"));
            continue;
        };
        let (ready, reason, message) = ready_of(attachment);
        if ready != "True" {
            problems.push(format!("{name}: Ready={ready} {reason}: {message}"));
            continue;
        }
        // The recorded grant must exist in the tenant, for the recorded principal and role.
        let recorded = attachment
            .status
            .as_ref()
            .and_then(|s| s.assignment.as_ref());
        let exists = recorded.is_some_and(|r| {
            assignments.iter().any(|a| {
                a.id.eq_ignore_ascii_case(&r.id)
                    && a.principal_id.eq_ignore_ascii_case(&r.principal_id)
                    && crate::model::PullRole::from_definition_id(&a.role_definition_id)
                        .is_some_and(|role| role.short_name() == r.role)
            })
        });
        if !exists {
            problems.push(format!(
                "{name}: its role assignment is not in the emulated tenant"
            ));
        }
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

fn print_endpoints(sandbox: &Sandbox) {
    println!("Kubernetes API emulator: {}", sandbox.kube.endpoint());
    println!("ARM emulator:            {}", sandbox.arm.endpoint());
    println!("kubeconfig:              {}", sandbox.kubeconfig.display());
    println!(
        "try:  KUBECONFIG={} kubectl get registryattachments",
        sandbox.kubeconfig.display()
    );
    println!(
        "preflight (read-only), in another terminal:\n\n{}\n",
        sandbox.check_command()
    );
}

/// The real operator (`controller::run`, as `run` starts it) against the sandbox, until `stopped`.
async fn start_operator(
    sandbox: &Sandbox,
    client: &kube::Client,
    resync: Duration,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<controller::Stopped>, String> {
    let metrics = Arc::new(Metrics::default());
    let azure = sandbox
        .azure_settings()?
        .arm_client(metrics.clone())
        .map_err(|e| e.to_string())?;
    let owner = crate::cli::cluster_owner_id(client).await?;
    let settings = Settings {
        resync,
        ..Settings::new(sandbox.kubelet_identity()?, owner)
    };
    Ok(tokio::spawn(controller::run(
        client.clone(),
        Arc::new(azure),
        settings,
        metrics,
        Arc::new(crate::http::Readiness::default()),
        controller::RunOptions {
            instance: Some("sandbox".to_string()),
            election: None,
            shutdown_grace: Duration::from_secs(5),
        },
        async move {
            let _ = stopped.await;
        },
    )))
}

pub async fn run(args: SandboxArgs) -> Result<(), String> {
    crate::telemetry::init(crate::telemetry::LogFormat::Text, Some(&args.log_filter));
    let tenant = load_tenant(args.tenant.as_deref())?;
    let sandbox = Sandbox::start(
        tenant,
        args.kubeconfig.clone(),
        args.kube_port,
        args.arm_port,
    )
    .await?;
    let client = sandbox.client().await?;
    install_crd(&client).await?;
    let names = if args.no_examples {
        Vec::new()
    } else {
        apply_examples(&client).await?
    };

    print_endpoints(&sandbox);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = if args.no_operator {
        println!(
            "\nThe operator is not running. Start it yourself:\n\n{}\n",
            sandbox.run_command()
        );
        None
    } else {
        Some(start_operator(&sandbox, &client, args.resync, stopped).await?)
    };

    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let started = Instant::now();
    let mut last_screen = String::new();
    let outcome = loop {
        let attachments = api
            .list(&ListParams::default())
            .await
            .map(|list| list.items)
            .unwrap_or_default();
        let screen = render(&attachments, &sandbox.arm);
        if screen != last_screen {
            println!("\n{}", screen);
            last_screen = screen;
        }
        if args.once {
            match not_converged(&attachments, &names, &sandbox.arm) {
                None => break Ok(()),
                Some(reason) if started.elapsed() > args.timeout => {
                    break Err(format!("not converged after {:?}:\n{reason}", args.timeout));
                }
                Some(_) => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = crate::cli::shutdown_signal() => break Ok(()),
        }
    };
    let _ = stop.send(());
    if let Some(operator) = operator {
        let _ = tokio::time::timeout(Duration::from_secs(5), operator).await;
    }
    if outcome.is_ok() && args.once {
        println!("converged: every example is Ready and its role assignment exists");
    }
    outcome
}
