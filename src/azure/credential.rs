//! Turns the operator's Azure settings (cloud, endpoints, extra CA, credential kind) into a token
//! credential and an ARM client. azure_identity 1.x has no default chain, so the credential is
//! picked explicitly and a missing setting is a startup error that names the flag to set.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport, Url};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::arm::ArmClient;
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialKind {
    /// AKS workload identity: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE.
    WorkloadIdentity,
    /// The managed identity of the host (IMDS or App Service style endpoint).
    ManagedIdentity,
    /// A service principal with a client secret (AZURE_CLIENT_SECRET).
    ClientSecret,
    /// The developer's `az login` session; for running outside a cluster.
    AzureCli,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cloud {
    #[value(name = "AzurePublic")]
    AzurePublic,
    #[value(name = "AzureChina")]
    AzureChina,
    #[value(name = "AzureUSGovernment")]
    AzureUsGovernment,
}

impl Cloud {
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            Cloud::AzurePublic => "https://management.azure.com",
            Cloud::AzureChina => "https://management.chinacloudapi.cn",
            Cloud::AzureUsGovernment => "https://management.usgovcloudapi.net",
        }
    }

    /// The suffix of every ACR login server in this cloud.
    pub fn registry_suffix(self) -> &'static str {
        match self {
            Cloud::AzurePublic => ".azurecr.io",
            Cloud::AzureChina => ".azurecr.cn",
            Cloud::AzureUsGovernment => ".azurecr.us",
        }
    }

    fn configuration(self) -> CloudConfiguration {
        match self {
            Cloud::AzurePublic => CloudConfiguration::AzurePublic,
            Cloud::AzureChina => CloudConfiguration::AzureChina,
            Cloud::AzureUsGovernment => CloudConfiguration::AzureGovernment,
        }
    }
}

/// Everything needed to talk to ARM. Secrets are held as `Secret` so they never print.
#[derive(Clone, Debug)]
pub struct AzureSettings {
    pub cloud: Cloud,
    pub arm_endpoint: Option<Url>,
    /// Token audience for ARM when it is not the endpoint itself (Azure Stack Hub, or an
    /// endpoint reached through a proxy hostname).
    pub arm_audience: Option<String>,
    pub authority_host: Option<Url>,
    pub extra_ca_file: Option<PathBuf>,
    pub credential: CredentialKind,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub federated_token_file: Option<PathBuf>,
    /// Which replica is calling (the pod name): sent in the User-Agent, so ARM's logs and the
    /// emulator can tell replicas apart.
    pub instance: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--extra-ca-file {path}: {message}")]
    ExtraCa { path: PathBuf, message: String },
    #[error("{0}")]
    Missing(String),
    #[error("cannot build the {kind} credential: {message}")]
    Credential { kind: &'static str, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("invalid endpoint {0}")]
    Endpoint(String),
}

impl AzureSettings {
    pub fn arm_endpoint(&self) -> Result<Url, ConfigError> {
        match &self.arm_endpoint {
            Some(url) => Ok(url.clone()),
            None => Url::parse(self.cloud.arm_endpoint())
                .map_err(|e| ConfigError::Endpoint(e.to_string())),
        }
    }

    /// One HTTP client for both the credential and ARM, trusting the extra CA bundle when given
    /// (a corporate TLS proxy, or the emulators in tests).
    fn transport(&self) -> Result<Transport, ConfigError> {
        // reqwest panics when no rustls provider is installed; never let a caller forget.
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30));
        if let Some(path) = &self.extra_ca_file {
            let ca_error = |message: String| ConfigError::ExtraCa {
                path: path.clone(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            if certificates.is_empty() {
                return Err(ca_error("no PEM certificates in the file".to_string()));
            }
            builder = builder.tls_certs_merge(certificates);
        }
        let client = builder.build().map_err(|e| {
            // reqwest's own text is only "builder error"; the cause (e.g. "No CA certificates
            // were loaded from the system") is in the source chain.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            ConfigError::Http(text)
        })?;
        Ok(Transport::new(Arc::new(client)))
    }

    /// Client options for the credential: our transport, no SDK retries (the controller retries),
    /// and the authority host. Without an explicit host on the public cloud we leave `cloud` unset
    /// so azure_identity honours AZURE_AUTHORITY_HOST, which the workload identity webhook injects.
    fn credential_client_options(&self, transport: &Transport) -> ClientOptions {
        let cloud = match (&self.authority_host, self.cloud) {
            (Some(host), _) => {
                let mut custom = CustomConfiguration::default();
                custom.authority_host = host.as_str().to_string();
                Some(CloudConfiguration::Custom(custom))
            }
            (None, Cloud::AzurePublic) => None,
            (None, other) => Some(other.configuration()),
        };
        ClientOptions {
            transport: Some(transport.clone()),
            cloud: cloud.map(Arc::new),
            retry: RetryOptions::none(),
            ..Default::default()
        }
    }

    pub fn credential(
        &self,
        transport: &Transport,
    ) -> Result<Arc<dyn TokenCredential>, ConfigError> {
        let client_options = self.credential_client_options(transport);
        let failed = |kind: &'static str| {
            move |error: azure_core::Error| ConfigError::Credential {
                kind,
                message: error.to_string(),
            }
        };
        Ok(match self.credential {
            CredentialKind::WorkloadIdentity => {
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions { client_options },
                    client_id: self.client_id.clone(),
                    tenant_id: self.tenant_id.clone(),
                    token_file_path: self.federated_token_file.clone(),
                };
                WorkloadIdentityCredential::new(Some(options)).map_err(|error| {
                    ConfigError::Credential {
                        kind: "workload-identity",
                        message: format!(
                            "{error}; in a pod, label it azure.workload.identity/use=true and annotate its service account with azure.workload.identity/client-id, or pass --client-id, --tenant-id and --federated-token-file"
                        ),
                    }
                })?
            }
            CredentialKind::ManagedIdentity => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: self.client_id.clone().map(UserAssignedId::ClientId),
                    client_options,
                };
                ManagedIdentityCredential::new(Some(options)).map_err(failed("managed-identity"))?
            }
            CredentialKind::ClientSecret => {
                let tenant_id = self.tenant_id.as_deref().ok_or_else(|| {
                    ConfigError::Missing(
                        "--credential client-secret needs --tenant-id (or AZURE_TENANT_ID)"
                            .to_string(),
                    )
                })?;
                let client_id = self.client_id.clone().ok_or_else(|| {
                    ConfigError::Missing(
                        "--credential client-secret needs --client-id (or AZURE_CLIENT_ID)"
                            .to_string(),
                    )
                })?;
                let secret = self.client_secret.clone().ok_or_else(|| {
                    ConfigError::Missing(
                        "--credential client-secret needs AZURE_CLIENT_SECRET in the environment"
                            .to_string(),
                    )
                })?;
                ClientSecretCredential::new(
                    tenant_id,
                    client_id,
                    secret,
                    Some(ClientSecretCredentialOptions { client_options }),
                )
                .map_err(failed("client-secret"))?
            }
            CredentialKind::AzureCli => {
                AzureCliCredential::new(None).map_err(failed("azure-cli"))?
            }
        })
    }

    pub fn arm_client(&self, metrics: Arc<Metrics>) -> Result<ArmClient, ConfigError> {
        let transport = self.transport()?;
        let credential = self.credential(&transport)?;
        let endpoint = self.arm_endpoint()?;
        let scope =
            super::arm::token_scope(self.arm_audience.as_deref().unwrap_or(endpoint.as_str()));
        Ok(ArmClient::new_for_instance(
            endpoint,
            scope,
            credential,
            Some(transport),
            metrics,
            self.instance.as_deref(),
        ))
    }
}
