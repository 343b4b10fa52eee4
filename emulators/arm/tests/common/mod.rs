//! Shared helpers: a reqwest client trusting the emulator CA and thin ARM call wrappers.
#![allow(dead_code)]

use arm_emulator::{ArmEmulator, TenantConfig};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const SUB: &str = arm_emulator::DEFAULT_SUBSCRIPTION_ID;
pub const RA_API: &str = "2022-04-01";

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client_for(emu: &ArmEmulator) -> reqwest::Client {
    install_provider();
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("CA PEM parses");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client builds")
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Api {
    pub emu: ArmEmulator,
    pub client: reqwest::Client,
    pub token: String,
}

pub async fn start(config: TenantConfig) -> Api {
    let emu = ArmEmulator::start(config).await.expect("emulator starts");
    let client = client_for(&emu);
    let id = emu.operator_identity();
    let token = get_token(
        &emu,
        &client,
        &id.client_id,
        id.client_secret.as_deref().unwrap_or_default(),
    )
    .await;
    Api { emu, client, token }
}

pub async fn token_request(
    emu: &ArmEmulator,
    client: &reqwest::Client,
    form: &[(&str, &str)],
) -> Resp {
    let url = format!("{}/{}/oauth2/v2.0/token", emu.endpoint(), emu.tenant_id());
    let res = client
        .post(url)
        .form(form)
        .send()
        .await
        .expect("token request");
    to_resp(res).await
}

pub async fn get_token(
    emu: &ArmEmulator,
    client: &reqwest::Client,
    client_id: &str,
    secret: &str,
) -> String {
    let scope = emu.arm_scope();
    let r = token_request(
        emu,
        client,
        &[
            ("client_id", client_id),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "token: {}", r.body);
    r.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub async fn to_resp(res: reqwest::Response) -> Resp {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Resp {
        status,
        headers,
        body,
    }
}

impl Api {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.emu.endpoint(), path_and_query)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Resp {
        self.send_with_token(method, path_and_query, body, Some(&self.token))
            .await
    }

    pub async fn send_with_token(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Resp {
        let url = if path_and_query.starts_with("https://") {
            path_and_query.to_string()
        } else {
            self.url(path_and_query)
        };
        let mut req = self.client.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        to_resp(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path_and_query: &str) -> Resp {
        self.send(reqwest::Method::GET, path_and_query, None).await
    }

    pub async fn put(&self, path_and_query: &str, body: Value) -> Resp {
        self.send(reqwest::Method::PUT, path_and_query, Some(body))
            .await
    }

    pub async fn delete(&self, path_and_query: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path_and_query, None)
            .await
    }

    /// PUT `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
    pub async fn put_ra(
        &self,
        scope: &str,
        name: &str,
        role_guid: &str,
        principal: &str,
        principal_type: Option<&str>,
    ) -> Resp {
        let mut props = serde_json::json!({
            "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"),
            "principalId": principal,
        });
        if let Some(t) = principal_type {
            props["principalType"] = Value::String(t.to_string());
        }
        self.put(
            &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={RA_API}"),
            serde_json::json!({ "properties": props }),
        )
        .await
    }

    /// Follows `nextLink` and returns every item.
    pub async fn list_all(&self, first: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut next = Some(first.to_string());
        while let Some(url) = next {
            let r = self.get(&url).await;
            assert_eq!(r.status, 200, "list page: {}", r.body);
            pages += 1;
            items.extend(r.body["value"].as_array().cloned().unwrap_or_default());
            next = r
                .body
                .get("nextLink")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        (items, pages)
    }
}

pub fn rg_id(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}

pub fn registry_id(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ContainerRegistry/registries/{name}",
        rg_id(rg)
    )
}

pub fn cluster_id(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/{name}",
        rg_id(rg)
    )
}

pub fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}
