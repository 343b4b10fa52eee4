//! Entra ID token endpoint (client credentials with a secret or a federated assertion) and the
//! managed-identity endpoints, speaking the JSON `azure_identity` 1.0 parses:
//! Entra: `{token_type, expires_in, ext_expires_in, access_token}` (numbers), errors
//! `{error, error_description, error_codes, ...}`; App Service MSI: `expires_on` as a string.

use crate::config::IdentityConfig;
use crate::server::{Reply, Req};
use crate::state::{ANONYMOUS, IssuedToken, Operation, State};
use crate::util::{entra_timestamp, parse_pairs, unix_secs};
use serde_json::json;
use std::time::{Duration, SystemTime};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Entra-style error: `error_description` starts with the AADSTS code and carries the trace
/// lines real responses have.
fn entra_error(status: u16, error: &str, code: u32, message: &str) -> Reply {
    let trace_id = uuid::Uuid::new_v4().to_string();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let timestamp = entra_timestamp(SystemTime::now());
    Reply::json(
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

fn injected_token_failure(st: &mut State) -> Option<Reply> {
    let status = st.fail_next.get_mut(&Operation::Token)?.pop_front()?;
    let retry_after = st.faults.injected_retry_after_secs;
    let reply = match status {
        429 => entra_error(
            429,
            "temporarily_unavailable",
            90_033,
            "A transient error has occurred. Please try again.",
        )
        .header("Retry-After", retry_after),
        503 => entra_error(
            503,
            "temporarily_unavailable",
            90_033,
            "A transient error has occurred. Please try again.",
        )
        .header("Retry-After", retry_after),
        s if s >= 500 => entra_error(
            s,
            "server_error",
            90_033,
            "A transient error has occurred. Please try again.",
        ),
        s => entra_error(s, "invalid_request", 90_000, "Injected failure."),
    };
    Some(reply)
}

/// Issues a token for `identity`, valid for `audience` (a resource, without `/.default`). It is
/// shaped like an Entra access token (a JWT whose payload carries `aud`, `iss`, `tid`, `oid`,
/// `appid`, `iat`/`nbf`/`exp`), so clients can read their own object id from it as they do in
/// Azure; the signature is random bytes and nothing verifies it: the emulator recognises tokens
/// by their exact text.
fn issue(st: &mut State, identity: &IdentityConfig, audience: &str) -> (String, u64, SystemTime) {
    let now = crate::util::unix_secs(SystemTime::now());
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "arm-emulator"});
    let claims = serde_json::json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{}/", st.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + st.token_lifetime_secs,
        "appid": identity.client_id,
        "idtyp": "app",
        "oid": identity.object_id,
        "sub": identity.object_id,
        "tid": st.tenant_id,
        "ver": "1.0",
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let signature: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    let token = format!(
        "{}.{}.{}",
        crate::util::base64url(header.to_string().as_bytes()),
        crate::util::base64url(claims.to_string().as_bytes()),
        crate::util::base64url(&signature)
    );
    let lifetime = st.token_lifetime_secs;
    let expires_at_wall = SystemTime::now() + Duration::from_secs(lifetime);
    let expires_at = st.now() + lifetime as f64;
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            client_id: identity.client_id.clone(),
            object_id: identity.object_id.clone(),
            audience: audience.to_string(),
            expires_at,
            expires_at_wall,
        },
    );
    (token, lifetime, expires_at_wall)
}

/// `POST /{tenant}/oauth2/v2.0/token`
pub(crate) fn token(st: &mut State, r: &Req, tenant: &str) -> Reply {
    // Attributed to the identity the request claims to be, authenticated or not.
    let form = parse_pairs(&String::from_utf8_lossy(&r.body));
    let caller = form
        .iter()
        .find(|(k, _)| k == "client_id")
        .and_then(|(_, cid)| {
            st.identities
                .iter()
                .find(|i| i.client_id.eq_ignore_ascii_case(cid))
        })
        .map(|i| i.object_id.clone())
        .unwrap_or_else(|| ANONYMOUS.to_string());
    let reply = token_inner(st, r, tenant);
    reply
        .caller(&caller)
        .op(Some(Operation::Token))
        .header("Cache-Control", "no-store")
}

fn token_inner(st: &mut State, r: &Req, tenant: &str) -> Reply {
    let form = parse_pairs(&String::from_utf8_lossy(&r.body));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let client_id = field("client_id").unwrap_or_default();
    let identity = st
        .identities
        .iter()
        .find(|i| !client_id.is_empty() && i.client_id.eq_ignore_ascii_case(client_id))
        .cloned();
    if let Some(reply) = injected_token_failure(st) {
        return reply;
    }
    if r.method != "POST" {
        return entra_error(
            400,
            "invalid_request",
            900_561,
            "The endpoint only accepts POST requests. Received a GET request.",
        );
    }
    if !tenant.eq_ignore_ascii_case(&st.tenant_id) {
        return entra_error(
            400,
            "invalid_request",
            90_002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let content_type = r.header("content-type").unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return entra_error(
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    for required in ["grant_type", "client_id", "scope"] {
        if field(required).is_none_or(str::is_empty) {
            return entra_error(
                400,
                "invalid_request",
                900_144,
                &format!("The request body must contain the following parameter: '{required}'."),
            );
        }
    }
    let grant_type = field("grant_type").unwrap_or_default();
    if grant_type != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let scope = field("scope").unwrap_or_default();
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let audience = match scopes.as_slice() {
        [one] => match one.strip_suffix("/.default") {
            Some(resource) if !resource.is_empty() => resource.to_string(),
            _ => {
                return entra_error(
                    400,
                    "invalid_scope",
                    1_002_012,
                    &format!(
                        "The provided value for scope {one} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            }
        },
        _ => {
            return entra_error(
                400,
                "invalid_scope",
                70_011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            );
        }
    };
    let Some(identity) = identity else {
        return entra_error(
            400,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                st.tenant_id
            ),
        );
    };

    if let Some(secret) = field("client_secret") {
        if identity.client_secret.as_deref() != Some(secret) {
            return entra_error(
                401,
                "invalid_client",
                7_000_215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    identity.client_id
                ),
            );
        }
    } else if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type") != Some(JWT_BEARER) {
            return entra_error(
                400,
                "invalid_request",
                50_027,
                "Invalid client_assertion_type. Expected 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            );
        }
        if !jwt_shaped(assertion) {
            return entra_error(
                400,
                "invalid_request",
                50_027,
                "JWT token is invalid or malformed.",
            );
        }
    } else {
        return entra_error(
            401,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }

    let (access_token, lifetime, _) = issue(st, &identity, &audience);
    Reply::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    )
}

/// Three non-empty base64url segments; signatures are not checked (no issuer keys to check against).
fn jwt_shaped(s: &str) -> bool {
    let parts: Vec<&str> = s.trim().split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsiFlavor {
    /// `IDENTITY_ENDPOINT` + `X-IDENTITY-HEADER`, api-version 2019-08-01 (what
    /// `ManagedIdentityCredential` uses when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set).
    AppService,
    /// The VM IMDS shape (`Metadata: true`); azure_identity hard-codes 169.254.169.254, so only
    /// clients with a configurable endpoint reach this.
    Imds,
}

/// `GET /msi/token` and `GET /metadata/identity/oauth2/token`
pub(crate) fn managed_identity(st: &mut State, r: &Req, flavor: MsiFlavor) -> Reply {
    let reply = managed_identity_inner(st, r, flavor);
    reply.op(Some(Operation::Token))
}

fn msi_error(status: u16, flavor: MsiFlavor, message: &str) -> Reply {
    match flavor {
        MsiFlavor::AppService => {
            Reply::json(status, json!({"statusCode": status, "message": message}))
        }
        MsiFlavor::Imds => Reply::json(
            status,
            json!({"error": "invalid_request", "error_description": message}),
        ),
    }
}

fn managed_identity_inner(st: &mut State, r: &Req, flavor: MsiFlavor) -> Reply {
    if let Some(reply) = injected_token_failure(st) {
        return reply;
    }
    if r.method != "GET" {
        return msi_error(405, flavor, "Only GET is supported.");
    }
    match flavor {
        MsiFlavor::AppService => {
            if r.header("x-identity-header") != Some(st.identity_header.as_str()) {
                return msi_error(
                    401,
                    flavor,
                    "The X-IDENTITY-HEADER header is missing or invalid.",
                );
            }
        }
        MsiFlavor::Imds => {
            if !r
                .header("metadata")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                return msi_error(400, flavor, "Required metadata header not specified");
            }
        }
    }
    let Some(resource) = r.query_param("resource").filter(|s| !s.is_empty()) else {
        return msi_error(400, flavor, "Required query variable 'resource' is missing");
    };
    let resource = resource.to_string();
    let selected = if let Some(cid) = r.query_param("client_id") {
        st.identities
            .iter()
            .find(|i| i.client_id.eq_ignore_ascii_case(cid))
    } else if let Some(oid) = r
        .query_param("object_id")
        .or_else(|| r.query_param("principal_id"))
    {
        st.identities
            .iter()
            .find(|i| i.object_id.eq_ignore_ascii_case(oid))
    } else if r.query_param("mi_res_id").is_some() || r.query_param("msi_res_id").is_some() {
        None
    } else {
        st.identities.first()
    };
    let Some(identity) = selected.cloned() else {
        return msi_error(
            400,
            flavor,
            "No Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
        );
    };
    let (access_token, lifetime, expires_at) = issue(st, &identity, &resource);
    let expires_on = unix_secs(expires_at).to_string();
    let body = match flavor {
        MsiFlavor::AppService => json!({
            "access_token": access_token,
            "expires_on": expires_on,
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }),
        MsiFlavor::Imds => json!({
            "access_token": access_token,
            "client_id": identity.client_id,
            "expires_in": lifetime.to_string(),
            "expires_on": expires_on,
            "ext_expires_in": lifetime.to_string(),
            "not_before": unix_secs(SystemTime::now()).to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    };
    Reply::json(200, body).caller(&identity.object_id)
}
