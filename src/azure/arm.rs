//! The real ARM client: typed requests and responses for exactly the operations acr-attach uses,
//! sent through azure_core's pipeline (bearer-token policy, request ids, user agent) with the
//! pipeline's own retries switched off, because the controller owns retry timing. Besides the
//! reconciler's operations it has the read-only ones `acr-attach check` needs: the permissions
//! API, the operator's own role assignments, and the operator's own object id.
//!
//! User-Agent: `acr-attach/<version> [(instance <pod>)] azsdk-rust-acr-attach/<version> (...)`.
//! azure_core's `application_id` would be the natural place, but it must be at most 24 RFC 9110
//! token characters (no `/`, and a pod name can be 63 characters), and azure_core panics on
//! anything else; so a per-call policy that runs after azure_core's own user-agent policy puts
//! our product token (and the replica's name, sanitised) in front of the SDK's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions,
    Transport, Url,
};
use serde::Deserialize;
use serde_json::json;

use super::Operation;
use super::{
    ArmError, AzureApi, DeleteOutcome, Permission, PutOutcome, Registry, RoleAssignment,
    RoleAssignmentRequest,
};
use crate::metrics::Metrics;
use crate::model::{ClusterId, IdentityId, PermissionsMode, RegistryId, RoleAssignmentName};

/// First stable Microsoft.ContainerRegistry api-version that reports `roleAssignmentMode`.
pub const REGISTRY_API_VERSION: &str = "2025-11-01";
pub const MANAGED_CLUSTER_API_VERSION: &str = "2025-07-01";
pub const ROLE_ASSIGNMENT_API_VERSION: &str = "2022-04-01";
/// First stable Microsoft.Authorization api-version whose permissions include data actions.
pub const PERMISSIONS_API_VERSION: &str = "2022-04-01";
pub const IDENTITY_API_VERSION: &str = "2023-01-31";

/// Guards against following a `nextLink` forever if ARM (or an emulator) loops.
const MAX_LIST_PAGES: usize = 200;

pub struct ArmClient {
    pipeline: Pipeline,
    endpoint: Url,
    /// Kept for `caller_object_id`; the pipeline's bearer policy has its own handle.
    credential: Arc<dyn TokenCredential>,
    scope: String,
    metrics: Arc<Metrics>,
    /// Per subscription and kind of request: none before this instant, because ARM answered 429
    /// with a Retry-After. ARM budgets per principal, subscription and operation type (reads,
    /// writes, deletes in separate buckets), so one attachment's 429 holds every attachment's
    /// requests of that kind back instead of each one spending a request to learn the same thing,
    /// and a throttled write never holds back the reads that verify existing grants.
    held_back_until: Mutex<HashMap<(String, RequestKind), Instant>>,
}

/// ARM's throttling buckets, by the HTTP method of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RequestKind {
    Read,
    Write,
    Delete,
}

impl RequestKind {
    fn plural(self) -> &'static str {
        match self {
            RequestKind::Read => "reads",
            RequestKind::Write => "writes",
            RequestKind::Delete => "deletes",
        }
    }

    fn of(method: &Method) -> Self {
        match *method {
            Method::Get | Method::Head => RequestKind::Read,
            Method::Delete => RequestKind::Delete,
            _ => RequestKind::Write,
        }
    }
}

struct ArmResponse {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl ArmClient {
    /// `endpoint` is the ARM base URL; `scope` the token scope, normally `<endpoint>/.default`
    /// (see `token_scope`), which is the audience ARM accepts in every public cloud.
    pub fn new(
        endpoint: Url,
        scope: String,
        credential: Arc<dyn TokenCredential>,
        transport: Option<Transport>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::new_for_instance(endpoint, scope, credential, transport, metrics, None)
    }

    /// Like `new`, naming the replica (the pod name) in the User-Agent of every ARM request.
    pub fn new_for_instance(
        endpoint: Url,
        scope: String,
        credential: Arc<dyn TokenCredential>,
        transport: Option<Transport>,
        metrics: Arc<Metrics>,
        instance: Option<&str>,
    ) -> Self {
        let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
            credential.clone(),
            [scope.clone()],
        ));
        let user_agent: Arc<dyn Policy> = Arc::new(ProductUserAgent {
            product: user_agent_product(instance),
        });
        let options = ClientOptions {
            retry: RetryOptions::none(),
            transport,
            per_call_policies: vec![user_agent],
            ..Default::default()
        };
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            vec![auth],
            None,
        );
        Self {
            pipeline,
            endpoint,
            credential,
            scope,
            metrics,
            held_back_until: Mutex::new(HashMap::new()),
        }
    }

    /// Time left before ARM may be sent a request of `kind` about `subscription`, if any.
    fn held_back(&self, subscription: &str, kind: RequestKind) -> Option<Duration> {
        let gate = self
            .held_back_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        gate.get(&(subscription.to_string(), kind))
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    fn hold_back(&self, subscription: String, kind: RequestKind, for_: Duration) {
        let mut gate = self
            .held_back_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        gate.insert((subscription, kind), Instant::now() + for_);
    }

    fn url(&self, path: &str, api_version: &str) -> Result<Url, String> {
        let base = self.endpoint.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{path}")).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    async fn send(
        &self,
        operation: Operation,
        target: &str,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<ArmResponse, ArmError> {
        let subscription = subscription_of(&url);
        let kind = RequestKind::of(&method);
        if let Some(left) = subscription
            .as_deref()
            .and_then(|s| self.held_back(s, kind))
        {
            self.metrics.arm_request(operation, "held_back");
            return Err(ArmError::Response {
                operation,
                target: target.to_string(),
                status: 429,
                code: "SubscriptionRequestsThrottled".to_string(),
                message: format!(
                    "not sent: ARM asked to wait before the next {} to this subscription ({}s left)",
                    kind.plural(),
                    left.as_secs().max(1)
                ),
                retry_after: Some(left),
                request_id: None,
            });
        }
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        if let Some(body) = body {
            request
                .set_json(&body)
                .map_err(|e| decode_error(operation, target, e.to_string()))?;
        }
        let sent = self
            .pipeline
            .send(
                &Context::new(),
                &mut request,
                Some(PipelineSendOptions {
                    skip_checks: true,
                    ..Default::default()
                }),
            )
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let message = error_chain(&error);
                let failure = if matches!(error.kind(), ErrorKind::Credential) {
                    ArmError::Credential {
                        operation,
                        target: target.to_string(),
                        message,
                    }
                } else {
                    ArmError::Transport {
                        operation,
                        target: target.to_string(),
                        message,
                    }
                };
                self.metrics.arm_request(operation, failure.code());
                return Err(failure);
            }
        };
        let (status, headers, body) = response.deconstruct();
        let status = u16::from(status);
        self.metrics.arm_request(operation, &status.to_string());
        self.metrics.observe_rate_limits(&headers);
        if status == 429
            && let (Some(subscription), Some(wait)) = (subscription, retry_after(&headers))
        {
            self.metrics.arm_throttled(wait);
            self.hold_back(subscription, kind, wait);
        }
        Ok(ArmResponse {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        operation: Operation,
        target: &str,
        response: &ArmResponse,
    ) -> Result<T, ArmError> {
        serde_json::from_slice(&response.body)
            .map_err(|e| decode_error(operation, target, e.to_string()))
    }

    /// GET of one ARM resource that must answer 200 with a JSON body.
    async fn get_resource<T: for<'de> Deserialize<'de>>(
        &self,
        operation: Operation,
        target: &str,
        api_version: &str,
    ) -> Result<T, ArmError> {
        let url = self
            .url(target, api_version)
            .map_err(|e| decode_error(operation, target, e))?;
        let response = self.send(operation, target, Method::Get, url, None).await?;
        if response.status != 200 {
            return Err(response_error(operation, target, &response));
        }
        Self::parse(operation, target, &response)
    }
}

impl ArmClient {
    /// Decodes listed assignments one by one: an element that does not decode is skipped, logged
    /// and counted, rather than failing the listing (and every attachment on that registry).
    fn lenient_assignments(
        &self,
        target: &str,
        items: Vec<serde_json::Value>,
    ) -> impl Iterator<Item = RoleAssignment> {
        let mut decoded = Vec::with_capacity(items.len());
        for item in items {
            match serde_json::from_value::<ArmRoleAssignment>(item.clone()) {
                Ok(assignment) => decoded.push(RoleAssignment::from(assignment)),
                Err(error) => {
                    let id = item
                        .get("id")
                        .and_then(|id| id.as_str())
                        .unwrap_or("unknown");
                    tracing::warn!(scope = target, assignment = id, %error, "skipped a role assignment ARM listed in a shape acr-attach cannot read");
                    self.metrics
                        .malformed_list_item(Operation::ListRoleAssignments);
                }
            }
        }
        decoded.into_iter()
    }

    /// Follows `nextLink` pages of a list at `first`, keeping the token on the ARM endpoint.
    async fn list_pages<T: for<'de> Deserialize<'de>>(
        &self,
        operation: Operation,
        target: &str,
        first: Url,
    ) -> Result<Vec<T>, ArmError> {
        let mut url = first;
        let mut items = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let response = self.send(operation, target, Method::Get, url, None).await?;
            if response.status != 200 {
                return Err(response_error(operation, target, &response));
            }
            let page: ArmPage<T> = Self::parse(operation, target, &response)?;
            items.extend(page.value);
            match page.next_link {
                None => return Ok(items),
                Some(next) => {
                    url = Url::parse(&next)
                        .map_err(|e| decode_error(operation, target, e.to_string()))?;
                    if url.origin() != self.endpoint.origin() {
                        return Err(decode_error(
                            operation,
                            target,
                            format!("nextLink points outside the ARM endpoint: {next}"),
                        ));
                    }
                }
            }
        }
        Err(decode_error(
            operation,
            target,
            format!("more than {MAX_LIST_PAGES} pages"),
        ))
    }

    /// What the caller (acr-attach's own identity) may do at `scope`: one entry per role
    /// assignment at or above it. Read-only; the API has no principal parameter.
    pub async fn list_permissions(&self, scope: &str) -> Result<Vec<Permission>, ArmError> {
        let operation = Operation::ListPermissions;
        let path = format!("{scope}/providers/Microsoft.Authorization/permissions");
        let url = self
            .url(&path, PERMISSIONS_API_VERSION)
            .map_err(|e| decode_error(operation, scope, e))?;
        let entries: Vec<ArmPermission> = self.list_pages(operation, scope, url).await?;
        Ok(entries.into_iter().map(Permission::from).collect())
    }

    /// Role assignments of `principal` at or above `scope` (`atScope() and assignedTo(...)`),
    /// inherited ones included: where the operator's own grants and their conditions live.
    pub async fn list_role_assignments_of(
        &self,
        scope: &str,
        principal: &str,
    ) -> Result<Vec<RoleAssignment>, ArmError> {
        let operation = Operation::ListRoleAssignments;
        let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments");
        let mut url = self
            .url(&path, ROLE_ASSIGNMENT_API_VERSION)
            .map_err(|e| decode_error(operation, scope, e))?;
        url.query_pairs_mut().append_pair(
            "$filter",
            &format!("atScope() and assignedTo('{principal}')"),
        );
        let items: Vec<ArmRoleAssignment> = self.list_pages(operation, scope, url).await?;
        Ok(items.into_iter().map(RoleAssignment::from).collect())
    }

    /// Gets a token now (so a credential problem shows before any ARM call) and reads the
    /// caller's object id from it: Entra access tokens are JWTs with an `oid` claim. `None` when
    /// the token is not a JWT (opaque tokens from some test doubles). The signature is not
    /// checked: this only labels our own identity, it authorizes nothing.
    pub async fn caller_object_id(&self) -> Result<Option<String>, ArmError> {
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|error| ArmError::Credential {
                operation: Operation::GetToken,
                target: self.scope.clone(),
                message: error_chain(&error),
            })?;
        Ok(jwt_object_id(token.token.secret()))
    }
}

/// The `oid` claim of a JWT, if the text is one.
fn jwt_object_id(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    claims.get("oid")?.as_str().map(str::to_string)
}

/// Base64url (RFC 4648 §5), padding optional.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `acr-attach/<version>`, plus `(instance <name>)` with the name reduced to characters that
/// are safe in an HTTP comment and at most 63 of them (a Kubernetes pod name's length).
fn user_agent_product(instance: Option<&str>) -> String {
    let product = format!("acr-attach/{}", env!("CARGO_PKG_VERSION"));
    let name: String = instance
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(63)
        .collect();
    if name.is_empty() {
        product
    } else {
        format!("{product} (instance {name})")
    }
}

/// Prefixes azure_core's User-Agent with ours; see the module comment for why not application_id.
#[derive(Debug)]
struct ProductUserAgent {
    product: String,
}

#[async_trait]
impl Policy for ProductUserAgent {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let header = HeaderName::from_static("user-agent");
        let value = match request.headers().get_optional_str(&header) {
            Some(sdk) if !sdk.is_empty() => format!("{} {sdk}", self.product),
            _ => self.product.clone(),
        };
        request.insert_header(header, value);
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[async_trait]
impl AzureApi for ArmClient {
    async fn get_registry(&self, registry: &RegistryId) -> Result<Registry, ArmError> {
        let body: ArmRegistry = self
            .get_resource(
                Operation::GetRegistry,
                registry.as_str(),
                REGISTRY_API_VERSION,
            )
            .await?;
        Ok(Registry::from(body))
    }

    async fn list_registries(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<Registry>, ArmError> {
        let operation = Operation::ListRegistries;
        let scope = match resource_group {
            Some(group) => format!("/subscriptions/{subscription}/resourceGroups/{group}"),
            None => format!("/subscriptions/{subscription}"),
        };
        let path = format!("{scope}/providers/Microsoft.ContainerRegistry/registries");
        let url = self
            .url(&path, REGISTRY_API_VERSION)
            .map_err(|e| decode_error(operation, &scope, e))?;
        let listed: Vec<ArmRegistry> = self.list_pages(operation, &scope, url).await?;
        Ok(listed.into_iter().map(Registry::from).collect())
    }

    async fn get_kubelet_identity(&self, cluster: &ClusterId) -> Result<Option<String>, ArmError> {
        let body: ArmManagedCluster = self
            .get_resource(
                Operation::GetManagedCluster,
                cluster.as_str(),
                MANAGED_CLUSTER_API_VERSION,
            )
            .await?;
        Ok(body
            .properties
            .identity_profile
            .and_then(|profile| profile.kubeletidentity)
            .and_then(|identity| identity.object_id))
    }

    async fn list_role_assignments(
        &self,
        registry: &RegistryId,
    ) -> Result<Vec<RoleAssignment>, ArmError> {
        let operation = Operation::ListRoleAssignments;
        let target = registry.as_str();
        let path = format!("{target}/providers/Microsoft.Authorization/roleAssignments");
        let mut url = self
            .url(&path, ROLE_ASSIGNMENT_API_VERSION)
            .map_err(|e| decode_error(operation, target, e))?;
        // atScope() = at or above the registry; `principalId eq` cannot be combined with it.
        url.query_pairs_mut().append_pair("$filter", "atScope()");
        let items: Vec<serde_json::Value> = self.list_pages(operation, target, url).await?;
        Ok(self
            .lenient_assignments(target, items)
            // atScope() includes inherited ones; only those at the registry itself count.
            .filter(|assignment| assignment.scope.eq_ignore_ascii_case(target))
            .collect())
    }

    async fn get_role_assignment(
        &self,
        assignment_id: &str,
    ) -> Result<Option<RoleAssignment>, ArmError> {
        let operation = Operation::GetRoleAssignment;
        let url = self
            .url(assignment_id, ROLE_ASSIGNMENT_API_VERSION)
            .map_err(|e| decode_error(operation, assignment_id, e))?;
        let response = self
            .send(operation, assignment_id, Method::Get, url, None)
            .await?;
        match response.status {
            200 => {
                let body: ArmRoleAssignment = Self::parse(operation, assignment_id, &response)?;
                Ok(Some(body.into()))
            }
            404 => Ok(None),
            _ => Err(response_error(operation, assignment_id, &response)),
        }
    }

    async fn get_identity_principal(&self, identity: &IdentityId) -> Result<String, ArmError> {
        let operation = Operation::GetIdentity;
        let body: ArmIdentity = self
            .get_resource(operation, identity.as_str(), IDENTITY_API_VERSION)
            .await?;
        body.properties
            .principal_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                decode_error(
                    operation,
                    identity.as_str(),
                    "the identity has no properties.principalId".to_string(),
                )
            })
    }

    async fn put_role_assignment(
        &self,
        request: &RoleAssignmentRequest,
    ) -> Result<PutOutcome, ArmError> {
        let operation = Operation::PutRoleAssignment;
        let id = request.name.id_at(&request.registry);
        let url = self
            .url(&id, ROLE_ASSIGNMENT_API_VERSION)
            .map_err(|e| decode_error(operation, &id, e))?;
        let body = json!({
            "properties": {
                "roleDefinitionId": request.role.definition_id(request.registry.subscription()),
                "principalId": request.principal.as_str(),
                // Skips Entra's directory lookup, which fails for freshly created identities.
                "principalType": request.principal_type.as_arm(),
                "description": request.description,
            }
        });
        let mut body = body;
        if let Some(condition) = &request.condition {
            body["properties"]["condition"] = json!(condition);
            body["properties"]["conditionVersion"] = json!("2.0");
        }
        let response = self
            .send(operation, &id, Method::Put, url, Some(body))
            .await?;
        match response.status {
            200 | 201 => {
                let body: ArmRoleAssignment = Self::parse(operation, &id, &response)?;
                Ok(PutOutcome::Applied(body.into()))
            }
            409 => {
                let error = parse_error_body(&response.body);
                if error.code == "RoleAssignmentExists" {
                    Ok(PutOutcome::AlreadyExists {
                        existing_name: existing_assignment_name(&error.message),
                    })
                } else {
                    Err(response_error(operation, &id, &response))
                }
            }
            _ => Err(response_error(operation, &id, &response)),
        }
    }

    async fn delete_role_assignment(&self, assignment_id: &str) -> Result<DeleteOutcome, ArmError> {
        let operation = Operation::DeleteRoleAssignment;
        let url = self
            .url(assignment_id, ROLE_ASSIGNMENT_API_VERSION)
            .map_err(|e| decode_error(operation, assignment_id, e))?;
        let response = self
            .send(operation, assignment_id, Method::Delete, url, None)
            .await?;
        match response.status {
            200 => Ok(DeleteOutcome::Deleted),
            // 204: "already deleted or does not exist"; 404: the scope itself is gone.
            204 | 404 => Ok(DeleteOutcome::AlreadyGone),
            _ => Err(response_error(operation, assignment_id, &response)),
        }
    }
}

/// `https://management.azure.com/` -> `https://management.azure.com/.default`.
pub fn token_scope(audience: &str) -> String {
    format!("{}/.default", audience.trim_end_matches('/'))
}

fn decode_error(operation: Operation, target: &str, message: String) -> ArmError {
    ArmError::Decode {
        operation,
        target: target.to_string(),
        message,
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[derive(Debug, Default, Deserialize)]
struct ArmErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ArmErrorBody {
    error: ArmErrorDetail,
}

/// ARM's error code and message, at most 1,000 characters of either: the message ends up in a
/// condition, a log line and an event, and neither a proxy's HTML page nor a huge JSON message
/// should be carried whole.
fn parse_error_body(body: &[u8]) -> ArmErrorDetail {
    let bounded = |text: &str, limit: usize| text.chars().take(limit).collect::<String>();
    serde_json::from_slice::<ArmErrorBody>(body)
        .map(|parsed| ArmErrorDetail {
            code: bounded(&parsed.error.code, 200),
            message: bounded(&parsed.error.message, 1000),
        })
        .unwrap_or_else(|_| ArmErrorDetail {
            code: String::new(),
            message: bounded(&String::from_utf8_lossy(&body[..body.len().min(4096)]), 300),
        })
}

/// The subscription a request is about (`/subscriptions/{id}/...`), lower-cased.
fn subscription_of(url: &Url) -> Option<String> {
    let mut segments = url.path_segments()?;
    while let Some(segment) = segments.next() {
        if segment.eq_ignore_ascii_case("subscriptions") {
            return segments.next().map(str::to_ascii_lowercase);
        }
    }
    None
}

/// ARM's Retry-After, in whole seconds.
fn retry_after(headers: &Headers) -> Option<Duration> {
    headers
        .get_optional_str(&HeaderName::from_static("retry-after"))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn response_error(operation: Operation, target: &str, response: &ArmResponse) -> ArmError {
    let detail = parse_error_body(&response.body);
    let retry_after = retry_after(&response.headers);
    ArmError::Response {
        operation,
        target: target.to_string(),
        status: response.status,
        code: if detail.code.is_empty() {
            format!("Http{}", response.status)
        } else {
            detail.code
        },
        message: detail.message,
        retry_after,
        request_id: response
            .headers
            .get_optional_str(&HeaderName::from_static("x-ms-request-id"))
            .map(str::to_string),
    }
}

/// "The ID of the existing role assignment is 0b5fe9249a61425c96afcfe6e287ca2d." -> hyphenated GUID.
fn existing_assignment_name(message: &str) -> Option<String> {
    let marker = "existing role assignment is ";
    let start = message.find(marker)? + marker.len();
    let hex: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .filter(|c| *c != '-')
        .collect();
    uuid::Uuid::try_parse(&hex)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmRegistry {
    id: String,
    properties: ArmRegistryProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmRegistryProperties {
    login_server: Option<String>,
    role_assignment_mode: Option<String>,
}

impl From<ArmRegistry> for Registry {
    fn from(body: ArmRegistry) -> Self {
        Registry {
            id: body.id,
            login_server: body.properties.login_server,
            mode: body
                .properties
                .role_assignment_mode
                .as_deref()
                .and_then(PermissionsMode::from_arm),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmManagedCluster {
    properties: ArmManagedClusterProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmManagedClusterProperties {
    identity_profile: Option<ArmIdentityProfile>,
}

#[derive(Deserialize)]
struct ArmIdentityProfile {
    kubeletidentity: Option<ArmUserAssignedIdentity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmUserAssignedIdentity {
    object_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmPage<T> {
    value: Vec<T>,
    next_link: Option<String>,
}

/// Every array is optional in the schema (2015-07-01 has no data actions): missing = empty.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmPermission {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    not_actions: Vec<String>,
    #[serde(default)]
    data_actions: Vec<String>,
    #[serde(default)]
    not_data_actions: Vec<String>,
    condition: Option<String>,
}

impl From<ArmPermission> for Permission {
    fn from(value: ArmPermission) -> Self {
        Permission {
            actions: value.actions,
            not_actions: value.not_actions,
            data_actions: value.data_actions,
            not_data_actions: value.not_data_actions,
            condition: value.condition.filter(|c| !c.trim().is_empty()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmRoleAssignment {
    id: String,
    name: String,
    properties: ArmRoleAssignmentProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmRoleAssignmentProperties {
    role_definition_id: String,
    principal_id: String,
    scope: String,
    condition: Option<String>,
    description: Option<String>,
    principal_type: Option<String>,
}

#[derive(Deserialize)]
struct ArmIdentity {
    properties: ArmIdentityProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmIdentityProperties {
    principal_id: Option<String>,
}

impl From<ArmRoleAssignment> for RoleAssignment {
    fn from(value: ArmRoleAssignment) -> Self {
        RoleAssignment {
            id: value.id,
            name: RoleAssignmentName::from_arm(&value.name),
            scope: value.properties.scope,
            role_definition_id: value.properties.role_definition_id,
            principal_id: value.properties.principal_id,
            condition: value.properties.condition,
            description: value.properties.description,
            principal_type: value.properties.principal_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_name_is_recovered_from_the_409_message() {
        assert_eq!(
            existing_assignment_name(
                "The role assignment already exists. The ID of the existing role assignment is 0b5fe9249a61425c96afcfe6e287ca2d."
            )
            .as_deref(),
            Some("0b5fe924-9a61-425c-96af-cfe6e287ca2d")
        );
        assert_eq!(
            existing_assignment_name("The role assignment already exists."),
            None
        );
    }

    #[test]
    fn token_scope_follows_the_endpoint() {
        let public = Url::parse("https://management.azure.com/").unwrap();
        assert_eq!(
            token_scope(public.as_str()),
            "https://management.azure.com/.default"
        );
        let china = Url::parse("https://management.chinacloudapi.cn").unwrap();
        assert_eq!(
            token_scope(china.as_str()),
            "https://management.chinacloudapi.cn/.default"
        );
    }

    #[test]
    fn the_user_agent_names_the_product_and_a_sanitised_instance() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(user_agent_product(None), format!("acr-attach/{version}"));
        assert_eq!(
            user_agent_product(Some("acr-attach-7d9f8-x2x\r\n(evil)")),
            format!("acr-attach/{version} (instance acr-attach-7d9f8-x2xevil)")
        );
        assert_eq!(
            user_agent_product(Some("  ")),
            format!("acr-attach/{version}")
        );
        let long = "a".repeat(200);
        assert_eq!(
            user_agent_product(Some(&long)).len(),
            format!("acr-attach/{version} (instance )").len() + 63
        );
    }

    #[test]
    fn the_object_id_is_read_from_a_jwt() {
        // {"alg":"none"} . {"oid":"0a7e0000-0000-4000-8000-00000000b1ec","tid":"t"} . sig
        let token = "eyJhbGciOiJub25lIn0.eyJvaWQiOiIwYTdlMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMGIxZWMiLCJ0aWQiOiJ0In0.c2ln";
        assert_eq!(
            jwt_object_id(token).as_deref(),
            Some("0a7e0000-0000-4000-8000-00000000b1ec")
        );
        assert_eq!(jwt_object_id("opaque-token"), None);
        assert_eq!(jwt_object_id("a.!!!.c"), None);
    }

    #[test]
    fn permissions_without_data_actions_decode() {
        let page: ArmPage<ArmPermission> = serde_json::from_str(
            r#"{"value":[{"actions":["*/read"],"notActions":[]}],"nextLink":"nextlink"}"#,
        )
        .unwrap();
        let permission = Permission::from(page.value.into_iter().next().unwrap());
        assert!(permission.allows("Microsoft.ContainerRegistry/registries/read"));
        assert!(!permission.allows("Microsoft.Authorization/roleAssignments/write"));
        assert!(permission.data_actions.is_empty());
    }

    #[test]
    fn published_examples_decode() {
        // Shapes from the Azure REST API specs (emulators/arm/contracts).
        let list: ArmPage<ArmRoleAssignment> = serde_json::from_str(
            r#"{"value":[{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/0b5fe924-9a61-425c-96af-cfe6e287ca2d","principalId":"ce2ce14e-85d7-4629-bdbc-454d0519d987","principalType":"User","scope":"/subscriptions/a925f2f7-5c63-4b7b-8799-25a5f97bc3b2"},"id":"/subscriptions/a925f2f7-5c63-4b7b-8799-25a5f97bc3b2/providers/Microsoft.Authorization/roleAssignments/b0f43c54-e787-4862-89b1-a653fa9cf747","type":"Microsoft.Authorization/roleAssignments","name":"b0f43c54-e787-4862-89b1-a653fa9cf747"}]}"#,
        )
        .unwrap();
        assert_eq!(list.value.len(), 1);
        assert!(list.next_link.is_none());
    }

    #[test]
    fn the_published_registry_list_decodes_with_mode_and_login_server() {
        let example: serde_json::Value = serde_json::from_str(include_str!(
            "../../emulators/arm/contracts/acr_2025-11-01_RegistryList.json"
        ))
        .unwrap();
        let page: ArmPage<ArmRegistry> =
            serde_json::from_value(example["responses"]["200"]["body"].clone()).unwrap();
        let registries: Vec<Registry> = page.value.into_iter().map(Registry::from).collect();
        assert_eq!(registries.len(), 1);
        assert!(registries[0].id.ends_with("/registries/myRegistry"));
        assert_eq!(
            registries[0].login_server.as_deref(),
            Some("myRegistry.azurecr.io")
        );
        assert_eq!(registries[0].mode, Some(PermissionsMode::Legacy));
    }
}
