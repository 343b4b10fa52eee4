//! The ARM surface: authentication, throttling, authorization, registries, managed clusters and
//! Microsoft.Authorization/roleAssignments, in ARM's order of checks and with its error bodies.

use crate::config::{AbacDenialWording, AuthorizationMode, UnknownPrincipal};
use crate::rbac::{AssignmentAttributes, Condition, RequestContext, grants_action};
use crate::server::{Reply, Req};
use crate::state::{
    Bucket, ListCorruption, OpKind, Operation, Registry, RoleAssignmentRecord, State, norm_id,
    render_role_definition_id,
};
use crate::util::{arm_timestamp, guid_hex, is_guid, percent_decode};
use serde_json::{Map, Value, json};
use std::time::SystemTime;

const RA_SEGMENTS: [&str; 3] = ["providers", "Microsoft.Authorization", "roleAssignments"];
const PERMISSIONS_SEGMENTS: [&str; 3] = ["providers", "Microsoft.Authorization", "permissions"];
const PRINCIPAL_TYPES: [&str; 5] = [
    "User",
    "Group",
    "ServicePrincipal",
    "ForeignGroup",
    "Device",
];

pub(crate) fn arm_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

#[derive(Debug)]
enum Route {
    /// `/subscriptions/S/resourceGroups/RG/providers/{ns}/{type}/{name}` of a type the emulator serves.
    Resource {
        kind: ResourceKind,
        sub: String,
        rg: String,
        name: String,
    },
    Assignment {
        scope: Vec<String>,
        name: String,
    },
    Assignments {
        scope: Vec<String>,
    },
    /// `{scope}/providers/Microsoft.Authorization/permissions`
    Permissions {
        scope: Vec<String>,
    },
    /// `/subscriptions/S[/resourceGroups/RG]/providers/Microsoft.ContainerRegistry/registries`
    Registries {
        sub: String,
        rg: Option<String>,
    },
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResourceKind {
    Registry,
    Cluster,
    UserAssignedIdentity,
}

/// `providers/Microsoft.ContainerRegistry/registries`
fn is_registries_collection(tail: &[String]) -> bool {
    tail.len() == 3
        && tail[0].eq_ignore_ascii_case("providers")
        && tail[1].eq_ignore_ascii_case("Microsoft.ContainerRegistry")
        && tail[2].eq_ignore_ascii_case("registries")
}

fn parse_route(segs: &[String]) -> Route {
    if segs.len() >= 3
        && (0..3).all(|k| segs[segs.len() - 3 + k].eq_ignore_ascii_case(PERMISSIONS_SEGMENTS[k]))
    {
        return Route::Permissions {
            scope: segs[..segs.len() - 3].to_vec(),
        };
    }
    let ra_at = (0..segs.len().saturating_sub(2))
        .rev()
        .find(|&i| (0..3).all(|k| segs[i + k].eq_ignore_ascii_case(RA_SEGMENTS[k])));
    if let Some(i) = ra_at {
        let scope = segs[..i].to_vec();
        return match &segs[i + 3..] {
            [] => Route::Assignments { scope },
            [name] => Route::Assignment {
                scope,
                name: name.clone(),
            },
            _ => Route::Unknown,
        };
    }
    if segs.len() == 5
        && segs[0].eq_ignore_ascii_case("subscriptions")
        && is_registries_collection(&segs[2..])
    {
        return Route::Registries {
            sub: segs[1].clone(),
            rg: None,
        };
    }
    if segs.len() == 7
        && segs[0].eq_ignore_ascii_case("subscriptions")
        && segs[2].eq_ignore_ascii_case("resourceGroups")
        && is_registries_collection(&segs[4..])
    {
        return Route::Registries {
            sub: segs[1].clone(),
            rg: Some(segs[3].clone()),
        };
    }
    if segs.len() == 8
        && segs[0].eq_ignore_ascii_case("subscriptions")
        && segs[2].eq_ignore_ascii_case("resourceGroups")
        && segs[4].eq_ignore_ascii_case("providers")
    {
        let kind = if segs[5].eq_ignore_ascii_case("Microsoft.ContainerRegistry")
            && segs[6].eq_ignore_ascii_case("registries")
        {
            Some(ResourceKind::Registry)
        } else if segs[5].eq_ignore_ascii_case("Microsoft.ContainerService")
            && segs[6].eq_ignore_ascii_case("managedClusters")
        {
            Some(ResourceKind::Cluster)
        } else if segs[5].eq_ignore_ascii_case("Microsoft.ManagedIdentity")
            && segs[6].eq_ignore_ascii_case("userAssignedIdentities")
        {
            Some(ResourceKind::UserAssignedIdentity)
        } else {
            None
        };
        if let Some(kind) = kind {
            return Route::Resource {
                kind,
                sub: segs[1].clone(),
                rg: segs[3].clone(),
                name: segs[7].clone(),
            };
        }
    }
    Route::Unknown
}

impl Route {
    fn operation(&self, method: &str) -> Option<Operation> {
        match (self, method) {
            (
                Route::Resource {
                    kind: ResourceKind::Registry,
                    ..
                },
                "GET",
            ) => Some(Operation::GetRegistry),
            (
                Route::Resource {
                    kind: ResourceKind::Cluster,
                    ..
                },
                "GET",
            ) => Some(Operation::GetManagedCluster),
            (
                Route::Resource {
                    kind: ResourceKind::UserAssignedIdentity,
                    ..
                },
                "GET",
            ) => Some(Operation::GetUserAssignedIdentity),
            (Route::Registries { .. }, "GET") => Some(Operation::ListRegistries),
            (Route::Assignment { .. }, "PUT") => Some(Operation::PutRoleAssignment),
            (Route::Assignment { .. }, "GET") => Some(Operation::GetRoleAssignment),
            (Route::Assignment { .. }, "DELETE") => Some(Operation::DeleteRoleAssignment),
            (Route::Assignments { .. }, "GET") => Some(Operation::ListRoleAssignments),
            (Route::Permissions { .. }, "GET") => Some(Operation::ListPermissions),
            _ => None,
        }
    }

    /// The subscription whose throttling budget the request spends ("" outside subscriptions).
    fn subscription(&self) -> String {
        match self {
            Route::Resource { sub, .. } | Route::Registries { sub, .. } => sub.clone(),
            Route::Assignment { scope, .. }
            | Route::Assignments { scope }
            | Route::Permissions { scope } => match scope.as_slice() {
                [first, sub, ..] if first.eq_ignore_ascii_case("subscriptions") => sub.clone(),
                _ => String::new(),
            },
            Route::Unknown => String::new(),
        }
    }
}

struct Caller {
    object_id: String,
    client_id: String,
}

fn normalize_audience(a: &str) -> String {
    let a = a.trim();
    let a = a.strip_suffix("/.default").unwrap_or(a);
    a.trim_end_matches('/').to_ascii_lowercase()
}

fn accepted_audiences(st: &State, endpoint: &str) -> Vec<String> {
    let mut v = vec![endpoint.to_string()];
    v.extend(st.own_audiences.iter().cloned());
    v.extend(st.extra_audiences.iter().cloned());
    v
}

fn unauthorized(endpoint: &str, tenant: &str, code: &str, message: &str) -> Reply {
    arm_error(401, code, message).header(
        "WWW-Authenticate",
        format!(
            "Bearer authorization_uri=\"{endpoint}/{tenant}\", error=\"invalid_token\", error_description=\"{message}\""
        ),
    )
}

fn authenticate(st: &State, endpoint: &str, r: &Req) -> Result<Caller, Reply> {
    let tenant = st.tenant_id.clone();
    let Some(header) = r.header("authorization") else {
        return Err(unauthorized(
            endpoint,
            &tenant,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let token = match header.trim().split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            token.trim()
        }
        _ => {
            return Err(unauthorized(
                endpoint,
                &tenant,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            ));
        }
    };
    let Some(issued) = st.tokens.get(token) else {
        return Err(unauthorized(
            endpoint,
            &tenant,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ));
    };
    if issued.expires_at <= st.now() {
        return Err(unauthorized(
            endpoint,
            &tenant,
            "ExpiredAuthenticationToken",
            &format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                arm_timestamp(issued.expires_at_wall),
                arm_timestamp(SystemTime::now())
            ),
        ));
    }
    let allowed = accepted_audiences(st, endpoint);
    let aud = normalize_audience(&issued.audience);
    if !allowed.iter().any(|a| normalize_audience(a) == aud) {
        let list = allowed
            .iter()
            .flat_map(|a| {
                let base = a.trim_end_matches('/');
                [format!("{base}/"), base.to_string()]
            })
            .collect::<Vec<_>>()
            .join("','");
        return Err(unauthorized(
            endpoint,
            &tenant,
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences '{list}'.",
                issued.audience
            ),
        ));
    }
    Ok(Caller {
        object_id: issued.object_id.clone(),
        client_id: issued.client_id.clone(),
    })
}

fn injected_fault(st: &mut State, op: Operation, sub: &str, caller: &str) -> Option<Reply> {
    if let Some(answer) = st.raw_next.get_mut(&op).and_then(|q| q.pop_front()) {
        return Some(Reply::raw(answer.status, &answer.content_type, answer.body));
    }
    let queued = st.fail_next.get_mut(&op).and_then(|q| q.pop_front());
    let status = match queued {
        Some(s) => s,
        None => {
            let rate = st.faults.server_error_rate;
            if !st.roll(rate) {
                return None;
            }
            if st.rng.next_u64().is_multiple_of(2) {
                500
            } else {
                503
            }
        }
    };
    Some(injected_reply(st, status, op, sub, caller))
}

/// The answer ARM gives for an injected failure of `status`, with its real code and wording.
pub(crate) fn injected_reply(
    st: &State,
    status: u16,
    op: Operation,
    sub: &str,
    caller: &str,
) -> Reply {
    let retry_after = st.faults.injected_retry_after_secs;
    match status {
        429 => throttled_reply(op.kind().unwrap_or(OpKind::Read), sub, caller, retry_after),
        500 => arm_error(
            500,
            "InternalServerError",
            &format!(
                "Encountered internal server error. Diagnostic information: timestamp '{}', subscription id '{sub}', tracking id '{}', request correlation id '{}'.",
                arm_timestamp(SystemTime::now()),
                uuid::Uuid::new_v4(),
                uuid::Uuid::new_v4()
            ),
        ),
        502 => arm_error(502, "BadGateway", "The gateway received an invalid response from the upstream server."),
        503 => arm_error(
            503,
            "ServiceUnavailable",
            "The server is currently unable to handle the request due to a temporary overloading or maintenance.",
        )
        .header("Retry-After", retry_after),
        504 => arm_error(
            504,
            "GatewayTimeout",
            "The gateway did not receive a response from 'Microsoft.Authorization' within the specified time period.",
        ),
        s => arm_error(s, "InjectedFailure", &format!("Failure injected by the emulator (HTTP {s}).")),
    }
}

fn throttled_reply(kind: OpKind, sub: &str, caller: &str, retry_after: u64) -> Reply {
    arm_error(
        429,
        "SubscriptionRequestsThrottled",
        &format!(
            "Number of '{}' requests for subscription '{sub}' actor '{caller}' exceeded. Please try again after '{retry_after}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
            kind.word()
        ),
    )
    .header("Retry-After", retry_after)
    .header(kind.header(), 0)
}

/// Takes a token from the (caller, subscription, kind) bucket; `Ok(remaining)` or the 429.
fn throttle(st: &mut State, caller: &str, sub: &str, kind: OpKind) -> Result<u64, Reply> {
    let cfg = st.faults.throttle.clone();
    let (burst, rate) = match kind {
        OpKind::Read => (cfg.reads_burst, cfg.reads_per_sec),
        OpKind::Write => (cfg.writes_burst, cfg.writes_per_sec),
        OpKind::Delete => (cfg.deletes_burst, cfg.deletes_per_sec),
    };
    if !cfg.enabled {
        return Ok(burst);
    }
    let now = st.now();
    let (burst, rate) = (burst as f64, rate as f64);
    let bucket = st
        .buckets
        .entry((caller.to_ascii_lowercase(), sub.to_ascii_lowercase(), kind))
        .or_insert(Bucket {
            tokens: burst,
            last: now,
        });
    bucket.tokens = (bucket.tokens + (now - bucket.last) * rate).min(burst);
    bucket.last = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        return Ok(bucket.tokens.floor() as u64);
    }
    let wait = if rate > 0.0 {
        ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64
    } else {
        3600
    };
    Err(throttled_reply(kind, sub, caller, wait))
}

fn scope_matches(prefix: &str, target: &str) -> bool {
    let p = norm_id(prefix);
    let t = norm_id(target);
    p == "/" || t == p || t.starts_with(&format!("{p}/"))
}

fn action_matches(rule: &str, action: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => action
            .to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase()),
        None => rule.eq_ignore_ascii_case(action),
    }
}

/// What conditions on the caller's assignments may look at for this request.
#[derive(Default)]
struct Attributes {
    /// PUT: the assignment the body describes.
    request: Option<AssignmentAttributes>,
    /// DELETE: the assignment being deleted.
    resource: Option<AssignmentAttributes>,
    /// DELETE of an assignment that does not exist: there is nothing for a condition to
    /// constrain, so only the role's actions count (UNCONFIRMED what ARM does).
    absent_resource: bool,
}

fn is_role_assignment_action(action: &str) -> bool {
    action
        .to_ascii_lowercase()
        .starts_with("microsoft.authorization/roleassignments/")
}

/// The caller's assignments at or above `target`, oldest first.
fn caller_assignments<'a>(
    st: &'a State,
    caller_object_id: &'a str,
    target: &'a str,
) -> impl Iterator<Item = &'a RoleAssignmentRecord> + 'a {
    st.assignments.values().filter(move |rec| {
        rec.principal_id.eq_ignore_ascii_case(caller_object_id) && scope_matches(&rec.scope, target)
    })
}

/// `(allowed, a role would have granted it but its condition was not fulfilled)`.
fn rbac_decision(
    st: &State,
    caller: &Caller,
    action: &str,
    target: &str,
    attrs: &Attributes,
) -> (bool, bool) {
    let ctx = RequestContext {
        action: action.to_string(),
        request: attrs.request.clone(),
        resource: attrs.resource.clone(),
    };
    let mut condition_failed = false;
    for rec in caller_assignments(st, &caller.object_id, target) {
        let role = rec.role_definition_guid().to_ascii_lowercase();
        let Some(perms) = st.role_permissions.get(&role) else {
            continue;
        };
        if !grants_action(perms, action) {
            continue;
        }
        let condition = rec.condition.as_deref().filter(|c| !c.trim().is_empty());
        let fulfilled = match condition {
            None => true,
            Some(_) if attrs.absent_resource => true,
            // A condition the emulator cannot parse grants nothing.
            Some(text) => Condition::parse(text).is_ok_and(|c| c.fulfilled(&ctx)),
        };
        if fulfilled {
            return (true, false);
        }
        condition_failed = true;
    }
    (false, condition_failed)
}

fn authorize(
    st: &State,
    caller: &Caller,
    op: Operation,
    target: &str,
    attrs: &Attributes,
) -> Result<(), Reply> {
    let Some(action) = op.action() else {
        return Ok(());
    };
    let denied = st.deny.iter().any(|rule| {
        rule.caller.as_deref().is_none_or(|c| {
            c.eq_ignore_ascii_case(&caller.object_id) || c.eq_ignore_ascii_case(&caller.client_id)
        }) && action_matches(&rule.action, action)
            && scope_matches(&rule.scope_prefix, target)
    });
    let (allowed, condition_failed) = match (denied, st.authorization) {
        (true, _) => (false, false),
        (false, AuthorizationMode::AllowAll) => (true, false),
        (false, AuthorizationMode::Rbac) => rbac_decision(st, caller, action, target, attrs),
    };
    if allowed {
        return Ok(());
    }
    let abac_wording = condition_failed
        || (st.faults.abac_denial_wording == AbacDenialWording::RoleAssignmentActions
            && is_role_assignment_action(action));
    let what = if abac_wording {
        "does not have authorization or an ABAC condition not fulfilled"
    } else {
        "does not have authorization"
    };
    Err(arm_error(
        403,
        "AuthorizationFailed",
        &format!(
            "The client '{}' with object id '{}' {what} to perform action '{action}' over scope '{target}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            caller.client_id, caller.object_id
        ),
    ))
}

/// The attributes of the assignment a PUT body describes, as far as it can be read.
fn request_attributes(st: &State, r: &Req) -> Option<AssignmentAttributes> {
    let body: Value = serde_json::from_slice(&r.body).ok()?;
    let props = body.get("properties")?;
    let principal_id = props.get("principalId")?.as_str()?.to_string();
    let role_definition_id =
        role_definition_guid(props.get("roleDefinitionId")?.as_str()?)?.to_ascii_lowercase();
    // Without principalType in the body, the directory's type (ARM's documented default is User).
    let principal_type = props
        .get("principalType")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            st.principals
                .get(&principal_id.to_ascii_lowercase())
                .map(|p| p.principal_type.clone())
        })
        .unwrap_or_else(|| "User".to_string());
    Some(AssignmentAttributes {
        role_definition_id,
        principal_type,
        principal_id,
    })
}

fn record_attributes(rec: &RoleAssignmentRecord) -> AssignmentAttributes {
    AssignmentAttributes {
        role_definition_id: rec.role_definition_guid().to_ascii_lowercase(),
        principal_type: rec.principal_type.clone(),
        principal_id: rec.principal_id.clone(),
    }
}

/// `Microsoft.Authorization/permissions`: one entry per role assignment of the caller at or above
/// the scope, built from the role's permissions. In `AllowAll` mode, one entry that says what the
/// emulator enforces: everything, minus the caller's `deny` rules that cover the scope.
fn list_permissions(st: &State, caller: &Caller, scope: &str, api_version: &str) -> Reply {
    // Data actions appear in REST responses from api-version 2018-07-01 on.
    let with_data = api_version
        .get(..10)
        .is_none_or(|date| date >= "2018-07-01");
    let entry = |perms: &crate::config::RolePermissions, condition: Option<(&str, &str)>| {
        let mut e = json!({"actions": perms.actions, "notActions": perms.not_actions});
        if with_data {
            e["dataActions"] = json!(perms.data_actions);
            e["notDataActions"] = json!(perms.not_data_actions);
        }
        if let Some((c, v)) = condition {
            e["condition"] = json!(c);
            e["conditionVersion"] = json!(v);
        }
        e
    };
    let value: Vec<Value> = match st.authorization {
        AuthorizationMode::AllowAll => {
            let not_actions: Vec<String> = st
                .deny
                .iter()
                .filter(|rule| {
                    rule.caller.as_deref().is_none_or(|c| {
                        c.eq_ignore_ascii_case(&caller.object_id)
                            || c.eq_ignore_ascii_case(&caller.client_id)
                    }) && scope_matches(&rule.scope_prefix, scope)
                })
                .map(|rule| rule.action.clone())
                .collect();
            let perms = crate::config::RolePermissions {
                actions: vec!["*".to_string()],
                not_actions,
                ..Default::default()
            };
            vec![entry(&perms, None)]
        }
        AuthorizationMode::Rbac => caller_assignments(st, &caller.object_id, scope)
            .map(|rec| {
                let perms = st
                    .role_permissions
                    .get(&rec.role_definition_guid().to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_default();
                let condition = rec
                    .condition
                    .as_deref()
                    .filter(|_| st.faults.permissions_show_assignment_conditions)
                    .map(|c| (c, rec.condition_version.as_deref().unwrap_or("2.0")));
                entry(&perms, condition)
            })
            .collect(),
    };
    Reply::json(200, json!({ "value": value }))
}

fn contains_ci(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(v))
}

pub(crate) fn handle(st: &mut State, endpoint: &str, r: &Req) -> Reply {
    let segs: Vec<String> = r
        .raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let target = format!("/{}", segs.join("/"));
    let route = parse_route(&segs);
    let op = route.operation(&r.method);
    let caller = match authenticate(st, endpoint, r) {
        Ok(c) => c,
        Err(reply) => return reply.op(op),
    };
    let Some(op) = op else {
        return arm_error(
            404,
            "NotImplementedByEmulator",
            &format!(
                "The ARM emulator does not implement '{} {target}'.",
                r.method
            ),
        )
        .caller(&caller.object_id);
    };
    let sub = route.subscription();
    let reply = handle_op(st, r, &route, op, &caller, &sub, &target, endpoint);
    reply.caller(&caller.object_id).op(Some(op))
}

#[allow(clippy::too_many_arguments)]
fn handle_op(
    st: &mut State,
    r: &Req,
    route: &Route,
    op: Operation,
    caller: &Caller,
    sub: &str,
    target: &str,
    endpoint: &str,
) -> Reply {
    if let Some(reply) = injected_fault(st, op, sub, &caller.object_id) {
        return reply;
    }
    let kind = op.kind().unwrap_or(OpKind::Read);
    let remaining = match throttle(st, &caller.object_id, sub, kind) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let api_version = r
        .query_param("api-version")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let mut reply = (|| {
        let Some(api_version) = api_version.clone() else {
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        };
        match route {
            Route::Resource {
                kind: ResourceKind::Registry,
                sub,
                rg,
                name,
            } => get_registry(st, caller, target, sub, rg, name, &api_version),
            Route::Resource {
                kind: ResourceKind::Cluster,
                sub,
                rg,
                name,
            } => get_cluster(st, caller, target, sub, rg, name, &api_version),
            Route::Resource {
                kind: ResourceKind::UserAssignedIdentity,
                sub,
                rg,
                name,
            } => get_user_assigned_identity(st, caller, target, sub, rg, name, &api_version),
            Route::Registries { sub, rg } => list_registries(
                st,
                caller,
                r,
                target,
                sub,
                rg.as_deref(),
                &api_version,
                endpoint,
            ),
            Route::Assignment { scope, name } => {
                if let Err(reply) = check_ra_api_version(st, &api_version) {
                    return reply;
                }
                let scope_text = format!("/{}", scope.join("/"));
                let attrs = match op {
                    Operation::PutRoleAssignment => Attributes {
                        request: request_attributes(st, r),
                        ..Attributes::default()
                    },
                    Operation::DeleteRoleAssignment => {
                        let existing = find_at_scope(st, &scope_text, name).map(|(_, rec)| rec);
                        Attributes {
                            resource: existing.map(record_attributes),
                            absent_resource: existing.is_none(),
                            ..Attributes::default()
                        }
                    }
                    _ => Attributes::default(),
                };
                if let Err(reply) = authorize(st, caller, op, target, &attrs) {
                    return reply;
                }
                if !is_guid(name) {
                    return arm_error(
                        400,
                        "InvalidRoleAssignmentId",
                        &format!(
                            "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
                        ),
                    );
                }
                let scope = format!("/{}", scope.join("/"));
                match op {
                    Operation::PutRoleAssignment => put_assignment(st, caller, r, &scope, name),
                    Operation::GetRoleAssignment => get_assignment(st, &scope, name),
                    _ => delete_assignment(st, &scope, name),
                }
            }
            Route::Assignments { scope } => {
                if let Err(reply) = check_ra_api_version(st, &api_version) {
                    return reply;
                }
                if let Err(reply) = authorize(st, caller, op, target, &Attributes::default()) {
                    return reply;
                }
                list_assignments(st, r, scope, endpoint)
            }
            Route::Permissions { scope } => {
                if !contains_ci(&st.api_versions.permissions, &api_version) {
                    return arm_error(
                        400,
                        "InvalidApiVersionParameter",
                        &format!(
                            "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
                            st.api_versions.permissions.join(",")
                        ),
                    );
                }
                if let Err(reply) = check_scope(st, scope) {
                    return reply;
                }
                list_permissions(st, caller, &format!("/{}", scope.join("/")), &api_version)
            }
            Route::Unknown => arm_error(404, "NotImplementedByEmulator", "Unknown route."),
        }
    })();
    // 2020-04-01-preview still returned canDelegate (its published example shows it); later
    // versions' examples do not.
    if let (Some(v), Some(body)) = (&api_version, reply.body.as_mut())
        && v.eq_ignore_ascii_case("2020-04-01-preview")
        && matches!(route, Route::Assignment { .. } | Route::Assignments { .. })
        && (200..300).contains(&reply.status)
    {
        let items: Vec<&mut Value> = match body.get_mut("value") {
            Some(Value::Array(items)) => items.iter_mut().collect(),
            _ => vec![body],
        };
        for item in items {
            if let Some(props) = item.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("canDelegate".to_string(), Value::Bool(false));
            }
        }
    }
    reply.header(kind.header(), remaining)
}

fn check_ra_api_version(st: &State, v: &str) -> Result<(), Reply> {
    if contains_ci(&st.api_versions.role_assignments, v) {
        return Ok(());
    }
    Err(invalid_api_version(v, &st.api_versions.role_assignments))
}

fn invalid_api_version(v: &str, supported: &[String]) -> Reply {
    arm_error(
        400,
        "InvalidApiVersionParameter",
        &format!(
            "The api-version '{v}' is invalid. The supported versions are '{}'.",
            supported.join(",")
        ),
    )
}

/// `Ok(true)`: the version renders `roleAssignmentMode`; `Ok(false)`: it predates the field;
/// `Err(supported versions)`: the registry provider does not have it.
fn registry_api_version(st: &State, api_version: &str) -> Result<bool, Vec<String>> {
    let v = &st.api_versions;
    if contains_ci(&v.registries_with_role_assignment_mode, api_version) {
        return Ok(true);
    }
    if contains_ci(&v.registries_without_role_assignment_mode, api_version) {
        return Ok(false);
    }
    let mut supported = v.registries_without_role_assignment_mode.clone();
    supported.extend(v.registries_with_role_assignment_mode.iter().cloned());
    Err(supported)
}

/// `$skipToken` of a paged LIST: the position of the last item already returned.
fn skip_token(r: &Req) -> Result<u64, Reply> {
    match r.query_param("$skipToken") {
        None => Ok(0),
        Some(t) => t.parse::<u64>().map_err(|_| {
            arm_error(
                400,
                "InvalidSkipToken",
                &format!("The skip token '{t}' is not valid."),
            )
        }),
    }
}

/// Absolute `nextLink`: the request's own URL (built from its Host) with `$skipToken={last}`.
fn next_link(r: &Req, endpoint: &str, last: u64) -> String {
    let kept: Vec<&str> = r
        .raw_query
        .split('&')
        .filter(|p| {
            let key = p.split('=').next().unwrap_or_default();
            !percent_decode(key, true).eq_ignore_ascii_case("$skipToken") && !p.is_empty()
        })
        .collect();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&format!("$skipToken={last}"));
    format!("{}{}?{query}", r.host(endpoint), r.raw_path)
}

fn no_registered_provider(v: &str, location: &str, ty: &str, supported: &[String]) -> Reply {
    arm_error(
        400,
        "NoRegisteredProviderFound",
        &format!(
            "No registered resource provider found for location '{location}' and API version '{v}' for type '{ty}'. The supported api-versions are '{}'. The supported locations are 'westus, eastus, westeurope, northeurope'.",
            supported.join(", ")
        ),
    )
}

fn check_parents(st: &State, sub: &str, rg: &str) -> Result<(), Reply> {
    if !st.subscription_exists(sub) {
        return Err(arm_error(
            404,
            "SubscriptionNotFound",
            &format!("The subscription '{sub}' could not be found."),
        ));
    }
    if !st.resource_group_exists(sub, rg) {
        return Err(arm_error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{rg}' could not be found."),
        ));
    }
    Ok(())
}

fn resource_not_found(provider_path: &str, rg: &str) -> Reply {
    arm_error(
        404,
        "ResourceNotFound",
        &format!(
            "The Resource '{provider_path}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

#[allow(clippy::too_many_arguments)]
fn get_registry(
    st: &State,
    caller: &Caller,
    target: &str,
    sub: &str,
    rg: &str,
    name: &str,
    api_version: &str,
) -> Reply {
    let found = st.registries.get(&norm_id(target));
    let with_mode = match registry_api_version(st, api_version) {
        Ok(with_mode) => with_mode,
        Err(supported) => {
            let location = found
                .map(|r| r.config.location.as_str())
                .unwrap_or("westus");
            return no_registered_provider(api_version, location, "registries", &supported);
        }
    };
    if let Err(reply) = authorize(
        st,
        caller,
        Operation::GetRegistry,
        target,
        &Attributes::default(),
    ) {
        return reply;
    }
    if let Err(reply) = check_parents(st, sub, rg) {
        return reply;
    }
    match found {
        Some(reg) => Reply::json(200, registry_body(reg, api_version, with_mode)),
        None => resource_not_found(
            &format!("Microsoft.ContainerRegistry/registries/{name}"),
            rg,
        ),
    }
}

/// Registries_List / Registries_ListByResourceGroup: full registry bodies as GET renders them,
/// in creation order, paged like role-assignment LIST.
#[allow(clippy::too_many_arguments)]
fn list_registries(
    st: &State,
    caller: &Caller,
    r: &Req,
    target: &str,
    sub: &str,
    rg: Option<&str>,
    api_version: &str,
    endpoint: &str,
) -> Reply {
    let with_mode = match registry_api_version(st, api_version) {
        Ok(with_mode) => with_mode,
        Err(supported) => {
            return no_registered_provider(api_version, "westus", "registries", &supported);
        }
    };
    let trims = st.faults.registry_list_trims_unreadable;
    if !trims
        && let Err(reply) = authorize(
            st,
            caller,
            Operation::ListRegistries,
            target,
            &Attributes::default(),
        )
    {
        return reply;
    }
    let scope = match rg {
        Some(rg) => {
            if let Err(reply) = check_parents(st, sub, rg) {
                return reply;
            }
            norm_id(&format!("/subscriptions/{sub}/resourceGroups/{rg}"))
        }
        None => {
            if !st.subscription_exists(sub) {
                return arm_error(
                    404,
                    "SubscriptionNotFound",
                    &format!("The subscription '{sub}' could not be found."),
                );
            }
            norm_id(&format!("/subscriptions/{sub}"))
        }
    };
    let after = match skip_token(r) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let mut candidates: Vec<&Registry> = st
        .registries
        .iter()
        .filter(|(key, reg)| key.starts_with(&format!("{scope}/")) && reg.seq > after)
        .map(|(_, reg)| reg)
        .collect();
    candidates.sort_by_key(|reg| reg.seq);
    let readable = |reg: &&Registry| {
        !trims
            || authorize(
                st,
                caller,
                Operation::ListRegistries,
                &format!("/{}", reg.config.id.trim_matches('/')),
                &Attributes::default(),
            )
            .is_ok()
    };
    let page_size = st.faults.list_page_size.max(1);
    let mut visible = candidates.into_iter().filter(readable);
    let page: Vec<&Registry> = visible.by_ref().take(page_size).collect();
    let more = visible.next().is_some();
    let mut body = json!({
        "value": page
            .iter()
            .map(|reg| registry_body(reg, api_version, with_mode))
            .collect::<Vec<_>>()
    });
    if more && let Some(last) = page.last() {
        body["nextLink"] = json!(next_link(r, endpoint, last.seq));
    }
    Reply::json(200, body)
}

#[allow(clippy::too_many_arguments)]
fn get_user_assigned_identity(
    st: &State,
    caller: &Caller,
    target: &str,
    sub: &str,
    rg: &str,
    name: &str,
    api_version: &str,
) -> Reply {
    if !contains_ci(&st.api_versions.user_assigned_identities, api_version) {
        return invalid_api_version(api_version, &st.api_versions.user_assigned_identities);
    }
    if let Err(reply) = authorize(
        st,
        caller,
        Operation::GetUserAssignedIdentity,
        target,
        &Attributes::default(),
    ) {
        return reply;
    }
    if let Err(reply) = check_parents(st, sub, rg) {
        return reply;
    }
    let Some(u) = st.user_identities.get(&norm_id(target)) else {
        return resource_not_found(
            &format!("Microsoft.ManagedIdentity/userAssignedIdentities/{name}"),
            rg,
        );
    };
    let segs: Vec<&str> = u.id.split('/').filter(|s| !s.is_empty()).collect();
    let (u_sub, u_rg, u_name) = (
        segs.get(1).copied().unwrap_or(sub),
        segs.get(3).copied().unwrap_or(rg),
        segs.get(7).copied().unwrap_or(name),
    );
    // The published example spells the segment `resourcegroups`, as AKS's kubelet resourceId does.
    Reply::json(
        200,
        json!({
            "id": format!("/subscriptions/{u_sub}/resourcegroups/{u_rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{u_name}"),
            "location": u.location,
            "name": u_name,
            "properties": {
                "clientId": u.client_id,
                "principalId": u.principal_id,
                "tenantId": st.tenant_id
            },
            "tags": u.tags,
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities"
        }),
    )
}

fn last_segment(id: &str) -> &str {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

fn registry_body(reg: &Registry, api_version: &str, with_mode: bool) -> Value {
    let c = &reg.config;
    let name = last_segment(&c.id);
    let created = arm_timestamp(reg.created);
    let login_server = c
        .login_server
        .clone()
        .unwrap_or_else(|| format!("{}.azurecr.io", name.to_ascii_lowercase()));
    let preview = api_version.to_ascii_lowercase().ends_with("-preview");
    let mut policies = json!({
        "quarantinePolicy": {"status": "disabled"},
        "trustPolicy": {"type": "Notary", "status": "disabled"},
        "retentionPolicy": {
            "days": 7,
            "lastUpdatedTime": created.replace('Z', "+00:00"),
            "status": "disabled"
        },
        "exportPolicy": {"status": "enabled"}
    });
    if !preview {
        policies["azureADAuthenticationAsArmPolicy"] = json!({"status": "enabled"});
    }
    let mut props = json!({
        "loginServer": login_server,
        "creationDate": created,
        "provisioningState": "Succeeded",
        "adminUserEnabled": false,
        "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
        "policies": policies,
        "encryption": {"status": "disabled"},
        "status": null,
        "dataEndpointEnabled": false,
        "dataEndpointHostNames": [],
        "privateEndpointConnections": [],
        "publicNetworkAccess": "Enabled",
        "networkRuleBypassOptions": "AzureServices",
        "networkRuleBypassAllowedForTasks": false,
        "zoneRedundancy": "Disabled",
        "anonymousPullEnabled": false
    });
    if preview {
        props["autoGeneratedDomainNameLabelScope"] = json!("Unsecure");
        props["metadataSearch"] = json!("Disabled");
    }
    if with_mode {
        props["roleAssignmentMode"] = json!(c.mode.as_str());
    }
    json!({
        "id": format!("/{}", c.id.trim_matches('/')),
        "name": name,
        "type": "Microsoft.ContainerRegistry/registries",
        "location": c.location,
        "tags": c.tags,
        "sku": {"name": c.sku, "tier": c.sku},
        "properties": props
    })
}

#[allow(clippy::too_many_arguments)]
fn get_cluster(
    st: &State,
    caller: &Caller,
    target: &str,
    sub: &str,
    rg: &str,
    name: &str,
    api_version: &str,
) -> Reply {
    let found = st.clusters.get(&norm_id(target));
    if !contains_ci(&st.api_versions.managed_clusters, api_version) {
        let location = found.map(|c| c.location.as_str()).unwrap_or("westus");
        return no_registered_provider(
            api_version,
            location,
            "managedClusters",
            &st.api_versions.managed_clusters,
        );
    }
    if let Err(reply) = authorize(
        st,
        caller,
        Operation::GetManagedCluster,
        target,
        &Attributes::default(),
    ) {
        return reply;
    }
    if let Err(reply) = check_parents(st, sub, rg) {
        return reply;
    }
    let Some(c) = found else {
        return resource_not_found(
            &format!("Microsoft.ContainerService/managedClusters/{name}"),
            rg,
        );
    };
    let segs: Vec<&str> = c.id.split('/').filter(|s| !s.is_empty()).collect();
    let (c_sub, c_rg, c_name) = (
        segs.get(1).copied().unwrap_or(sub),
        segs.get(3).copied().unwrap_or(rg),
        segs.get(7).copied().unwrap_or(name),
    );
    let principal_id = c.control_plane_principal_id.clone().unwrap_or_else(|| {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("cluster-identity:{}", norm_id(&c.id)).as_bytes(),
        )
        .to_string()
    });
    let loc = &c.location;
    let node_rg = format!("MC_{c_rg}_{c_name}_{loc}");
    let dns_prefix = format!("{}-dns", c_name.to_ascii_lowercase());
    let mut props = json!({
        "provisioningState": "Succeeded",
        "maxAgentPools": 100,
        "kubernetesVersion": "1.33.2",
        "currentKubernetesVersion": "1.33.2",
        "dnsPrefix": dns_prefix,
        "fqdn": format!("{dns_prefix}-abcd1234.hcp.{loc}.azmk8s.io"),
        "azurePortalFQDN": format!("{dns_prefix}-abcd1234.portal.hcp.{loc}.azmk8s.io"),
        "agentPoolProfiles": [{
            "name": "nodepool1",
            "count": 3,
            "vmSize": "Standard_DS2_v2",
            "maxPods": 110,
            "osType": "Linux",
            "eTag": "nvewbvoi",
            "provisioningState": "Succeeded",
            "orchestratorVersion": "1.33.2",
            "currentOrchestratorVersion": "1.33.2",
            "availabilityZones": ["1", "2", "3"],
            "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202507.21.0",
            "upgradeSettings": {"maxSurge": "10%"}
        }],
        "linuxProfile": {"adminUsername": "azureuser", "ssh": {"publicKeys": [{"keyData": "keydata"}]}},
        "servicePrincipalProfile": {"clientId": "msi"},
        "nodeResourceGroup": node_rg,
        "enableRBAC": true,
        "diskEncryptionSetID": format!("/subscriptions/{c_sub}/resourcegroups/{c_rg}/providers/Microsoft.Compute/diskEncryptionSets/des"),
        "networkProfile": {
            "networkPlugin": "azure",
            "podCidr": "10.244.0.0/16",
            "serviceCidr": "10.0.0.0/16",
            "dnsServiceIP": "10.0.0.10",
            "loadBalancerSku": "standard",
            "outboundType": "loadBalancer",
            "podCidrs": ["10.244.0.0/16"],
            "serviceCidrs": ["10.0.0.0/16"],
            "ipFamilies": ["IPv4"],
            "loadBalancerProfile": {
                "allocatedOutboundPorts": 0,
                "idleTimeoutInMinutes": 30,
                "outboundIPs": {"publicIPs": [{"id": format!("/subscriptions/{c_sub}/resourcegroups/{node_rg}/providers/Microsoft.Network/publicIPAddresses/outboundip1")}]},
                "effectiveOutboundIPs": [{"id": format!("/subscriptions/{c_sub}/resourcegroups/{node_rg}/providers/Microsoft.Network/publicIPAddresses/outboundip1")}]
            }
        },
        "upgradeSettings": {"overrideSettings": {"forceUpgrade": false, "until": "2025-01-01T00:00:00Z"}}
    });
    if let Some(k) = &c.kubelet_identity {
        props["identityProfile"] = json!({
            "kubeletidentity": {
                "clientId": k.client_id,
                "objectId": k.object_id,
                "resourceId": k.resource_id
            }
        });
    }
    json_reply_cluster(
        c_sub,
        c_rg,
        c_name,
        loc,
        props,
        &principal_id,
        &st.tenant_id,
    )
}

fn json_reply_cluster(
    sub: &str,
    rg: &str,
    name: &str,
    location: &str,
    props: Value,
    principal_id: &str,
    tenant_id: &str,
) -> Reply {
    // AKS renders its own ids with a lowercase "resourcegroups" segment.
    Reply::json(
        200,
        json!({
            "id": format!("/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"),
            "location": location,
            "name": name,
            "tags": {},
            "type": "Microsoft.ContainerService/ManagedClusters",
            "eTag": "beywbwei",
            "identity": {
                "type": "SystemAssigned",
                "principalId": principal_id,
                "tenantId": tenant_id
            },
            "properties": props
        }),
    )
}

/// Validates a role-assignment scope and that what it names exists.
fn check_scope(st: &State, scope: &[String]) -> Result<(), Reply> {
    let invalid = || {
        arm_error(
            400,
            "InvalidScope",
            &format!(
                "The scope '/{}' is not valid for role assignments in the emulator (subscription, resource group or resource scopes only).",
                scope.join("/")
            ),
        )
    };
    if scope.len() < 2 || !scope[0].eq_ignore_ascii_case("subscriptions") {
        return Err(invalid());
    }
    let sub = &scope[1];
    if !st.subscription_exists(sub) {
        return Err(arm_error(
            404,
            "SubscriptionNotFound",
            &format!("The subscription '{sub}' could not be found."),
        ));
    }
    if scope.len() == 2 {
        return Ok(());
    }
    if scope.len() < 4 || !scope[2].eq_ignore_ascii_case("resourceGroups") {
        return Err(invalid());
    }
    check_parents(st, sub, &scope[3])?;
    if scope.len() == 4 {
        return Ok(());
    }
    if scope.len() < 8
        || !scope.len().is_multiple_of(2)
        || !scope[4].eq_ignore_ascii_case("providers")
    {
        return Err(invalid());
    }
    if !st.resource_exists(&scope.join("/")) {
        return Err(resource_not_found(&scope[5..].join("/"), &scope[3]));
    }
    Ok(())
}

pub(crate) fn ra_body(rec: &RoleAssignmentRecord) -> Value {
    json!({
        "properties": {
            "roleDefinitionId": rec.role_definition_id,
            "principalId": rec.principal_id,
            "principalType": rec.principal_type,
            "scope": rec.scope,
            "condition": rec.condition,
            "conditionVersion": rec.condition_version,
            "createdOn": rec.created_on,
            "updatedOn": rec.updated_on,
            "createdBy": rec.created_by,
            "updatedBy": rec.updated_by,
            "delegatedManagedIdentityResourceId": null,
            "description": rec.description
        },
        "id": rec.id,
        "type": "Microsoft.Authorization/roleAssignments",
        "name": rec.name
    })
}

fn invalid_content(detail: &str) -> Reply {
    arm_error(
        400,
        "InvalidRequestContent",
        &format!("The request content was invalid and could not be deserialized: '{detail}'."),
    )
}

/// The GUID of `.../providers/Microsoft.Authorization/roleDefinitions/{guid}`.
fn role_definition_guid(id: &str) -> Option<String> {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [.., p, ns, ty, guid]
            if p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Authorization")
                && ty.eq_ignore_ascii_case("roleDefinitions")
                && is_guid(guid) =>
        {
            Some(guid.to_ascii_lowercase())
        }
        _ => None,
    }
}

fn optional_string(props: &Map<String, Value>, key: &str) -> Result<Option<String>, Reply> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid_content(&format!(
            "Error converting value {other} to type 'System.String'. Path 'properties.{key}'"
        ))),
    }
}

fn principal_not_found(st: &State, principal_id: &str) -> Reply {
    arm_error(
        400,
        "PrincipalNotFound",
        &format!(
            "Principal {} does not exist in the directory {}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
            guid_hex(principal_id),
            st.tenant_id
        ),
    )
}

/// Directory lookup of a new assignment's principal; returns the principalType to store.
fn check_principal(
    st: &State,
    principal_id: &str,
    principal_type: Option<&str>,
) -> Result<String, Reply> {
    let faults = &st.faults;
    match st.principals.get(&principal_id.to_ascii_lowercase()) {
        Some(p) => {
            let replicated =
                st.now() - p.created_at >= faults.principal_not_found_window_secs as f64;
            if replicated {
                if let Some(t) = principal_type
                    && !t.eq_ignore_ascii_case(&p.principal_type)
                {
                    return Err(arm_error(
                        400,
                        "UnmatchedPrincipalType",
                        &format!(
                            "The PrincipalId '{}' has type '{}' , which is different from specified PrincipalType '{t}'.",
                            guid_hex(principal_id),
                            p.principal_type
                        ),
                    ));
                }
                Ok(principal_type
                    .map(str::to_string)
                    .unwrap_or_else(|| p.principal_type.clone()))
            } else {
                match principal_type {
                    Some(t) if !faults.principal_not_found_ignores_principal_type => {
                        Ok(t.to_string())
                    }
                    _ => Err(principal_not_found(st, principal_id)),
                }
            }
        }
        None => match (faults.unknown_principal, principal_type) {
            (UnknownPrincipal::Accept, t) => Ok(t.unwrap_or("User").to_string()),
            (UnknownPrincipal::RejectUnlessPrincipalType, Some(t)) => Ok(t.to_string()),
            _ => Err(principal_not_found(st, principal_id)),
        },
    }
}

/// An assignment other than `except` with the same (scope, principal, role[, condition]).
fn find_duplicate(
    st: &State,
    except: Option<u64>,
    scope: &str,
    principal_id: &str,
    role_guid: &str,
    condition: Option<&str>,
) -> Option<String> {
    let scope = norm_id(scope);
    st.assignments
        .iter()
        .filter(|(seq, _)| Some(**seq) != except)
        .find(|(_, r)| {
            norm_id(&r.scope) == scope
                && r.principal_id.eq_ignore_ascii_case(principal_id)
                && r.role_definition_guid().eq_ignore_ascii_case(role_guid)
                && (st.faults.conflict_ignores_condition || r.condition.as_deref() == condition)
        })
        .map(|(_, r)| r.name.clone())
}

fn exists_conflict(name: &str) -> Reply {
    arm_error(
        409,
        "RoleAssignmentExists",
        &format!(
            "The role assignment already exists. The ID of the existing role assignment is {}.",
            guid_hex(name)
        ),
    )
}

fn update_not_permitted() -> Reply {
    arm_error(
        400,
        "RoleAssignmentUpdateNotPermitted",
        "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
    )
}

fn put_assignment(st: &mut State, caller: &Caller, r: &Req, scope: &str, name: &str) -> Reply {
    let body: Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => return invalid_content(&e.to_string()),
    };
    let Some(props) = body.get("properties").and_then(Value::as_object) else {
        return invalid_content("Required property 'properties' not found in JSON. Path ''");
    };
    let principal_id = match props.get("principalId").and_then(Value::as_str) {
        Some(p) if is_guid(p) => p.to_string(),
        _ => {
            return arm_error(
                400,
                "InvalidPrincipalId",
                "A valid principal ID must be provided for role assignment.",
            );
        }
    };
    let role_definition_id = props
        .get("roleDefinitionId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(role_guid) = role_definition_guid(role_definition_id) else {
        return arm_error(
            400,
            "InvalidRoleDefinitionId",
            &format!("The role definition ID '{role_definition_id}' is not valid."),
        );
    };
    if !st.role_definitions.contains(&role_guid) {
        return arm_error(
            400,
            "RoleDefinitionDoesNotExist",
            &format!(
                "The specified role definition with ID '{}' does not exist.",
                guid_hex(&role_guid)
            ),
        );
    }
    let (principal_type, description, condition, condition_version) = match (
        optional_string(props, "principalType"),
        optional_string(props, "description"),
        optional_string(props, "condition"),
        optional_string(props, "conditionVersion"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return e,
    };
    let principal_type = match principal_type {
        None => None,
        Some(t) => match PRINCIPAL_TYPES.iter().find(|k| k.eq_ignore_ascii_case(&t)) {
            Some(canonical) => Some(canonical.to_string()),
            None => {
                return invalid_content(&format!(
                    "Error converting value \"{t}\" to type 'PrincipalType'. Path 'properties.principalType'"
                ));
            }
        },
    };
    let condition = condition
        .filter(|c| !c.trim().is_empty())
        .map(|c| st.faults.condition_storage.apply(c));
    let condition_version = match (&condition, condition_version) {
        (None, _) => None,
        (Some(_), None) if st.faults.condition_version_required => {
            return arm_error(
                400,
                "InvalidConditionVersion",
                "The condition version must be specified when a condition is specified. The supported condition version is '2.0'.",
            );
        }
        (Some(_), None) => Some("2.0".to_string()),
        (Some(_), Some(v)) if v == "2.0" => Some(v),
        (Some(_), Some(v)) => {
            return arm_error(
                400,
                "InvalidConditionVersion",
                &format!(
                    "The condition version '{v}' is not supported. The supported condition version is '2.0'."
                ),
            );
        }
    };
    if condition.is_some()
        && st.faults.catalog_lister_rejects_conditions
        && role_guid.eq_ignore_ascii_case(crate::roles::REPOSITORY_CATALOG_LISTER)
    {
        return arm_error(
            400,
            "InvalidRoleAssignmentCondition",
            &format!(
                "The given role assignment condition is invalid. The role definition 'Container Registry Repository Catalog Lister' ({}) does not support conditions: assign it without a condition.",
                crate::roles::REPOSITORY_CATALOG_LISTER
            ),
        );
    }
    let scope_segs: Vec<String> = scope
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if let Err(reply) = check_scope(st, &scope_segs) {
        return reply;
    }
    let sub = scope_segs.get(1).cloned().unwrap_or_default();
    let now = arm_timestamp(SystemTime::now());
    let format = st.faults.role_definition_id_format;

    if let Some((seq, existing)) = st.find_assignment_by_name(name) {
        if norm_id(&existing.scope) != norm_id(scope)
            || !existing.principal_id.eq_ignore_ascii_case(&principal_id)
        {
            return update_not_permitted();
        }
        let role_changed = !existing
            .role_definition_guid()
            .eq_ignore_ascii_case(&role_guid);
        if role_changed && !st.faults.role_definition_update_allowed {
            return update_not_permitted();
        }
        if let Some(dup) = find_duplicate(
            st,
            Some(seq),
            scope,
            &principal_id,
            &role_guid,
            condition.as_deref(),
        ) {
            return exists_conflict(&dup);
        }
        let Some(rec) = st.assignments.get_mut(&seq) else {
            return arm_error(
                500,
                "InternalServerError",
                "Role assignment vanished during update.",
            );
        };
        if role_changed || format == crate::config::RoleDefinitionIdFormat::AsSent {
            rec.role_definition_id =
                render_role_definition_id(format, &sub, &role_guid, Some(role_definition_id));
        }
        if let Some(t) = principal_type {
            rec.principal_type = t;
        }
        rec.description = description;
        rec.condition = condition;
        rec.condition_version = condition_version;
        rec.updated_on = now;
        rec.updated_by = caller.object_id.clone();
        return Reply::json(200, ra_body(rec));
    }

    let principal_type = match check_principal(st, &principal_id, principal_type.as_deref()) {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    if let Some(dup) = find_duplicate(
        st,
        None,
        scope,
        &principal_id,
        &role_guid,
        condition.as_deref(),
    ) {
        return exists_conflict(&dup);
    }
    let in_subscription = st
        .assignments
        .values()
        .filter(|r| {
            r.scope
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(1)
                .is_some_and(|s| s.eq_ignore_ascii_case(&sub))
        })
        .count();
    if in_subscription >= st.faults.role_assignment_limit {
        return arm_error(
            400,
            "RoleAssignmentLimitExceeded",
            "No more role assignments can be created.",
        );
    }
    let rec = RoleAssignmentRecord {
        id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        name: name.to_string(),
        scope: scope.to_string(),
        role_definition_id: render_role_definition_id(
            format,
            &sub,
            &role_guid,
            Some(role_definition_id),
        ),
        principal_id,
        principal_type,
        description,
        condition,
        condition_version,
        created_by: caller.object_id.clone(),
        updated_by: caller.object_id.clone(),
        created_on: now.clone(),
        updated_on: now,
    };
    let body = ra_body(&rec);
    let seq = st.next_seq();
    st.assignments.insert(seq, rec);
    Reply::json(201, body)
}

fn find_at_scope<'a>(
    st: &'a State,
    scope: &str,
    name: &str,
) -> Option<(u64, &'a RoleAssignmentRecord)> {
    st.find_assignment_by_name(name)
        .filter(|(_, r)| norm_id(&r.scope) == norm_id(scope))
}

fn get_assignment(st: &State, scope: &str, name: &str) -> Reply {
    match find_at_scope(st, scope, name) {
        Some((_, rec)) => Reply::json(200, ra_body(rec)),
        None => arm_error(
            404,
            "RoleAssignmentNotFound",
            &format!("The role assignment '{name}' is not found."),
        ),
    }
}

fn delete_assignment(st: &mut State, scope: &str, name: &str) -> Reply {
    let Some(seq) = find_at_scope(st, scope, name).map(|(s, _)| s) else {
        let status = st.faults.delete_absent_status;
        return if status == 204 || status == 200 {
            Reply::empty(status)
        } else {
            arm_error(
                status,
                "RoleAssignmentNotFound",
                &format!("The role assignment '{name}' is not found."),
            )
        };
    };
    match st.assignments.remove(&seq) {
        Some(rec) => Reply::json(200, ra_body(&rec)),
        None => Reply::empty(204),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Filter {
    All,
    AtScope,
    Principal(String),
    AtScopePrincipal(String),
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches(|c| c == '\'' || c == '"').to_string()
}

/// `$filter` forms the role-assignment LIST API accepts. `atScope() and principalId eq` is
/// rejected as the service does (per Azure CLI); the error code is UNCONFIRMED.
fn parse_filter(raw: &str) -> Result<Filter, Reply> {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return Ok(Filter::All);
    }
    let unsupported = || {
        arm_error(
            400,
            "UnsupportedQuery",
            &format!(
                "The filter '{collapsed}' is not supported. Supported filters are 'atScope()', 'principalId eq '{{value}}'', 'assignedTo('{{value}}')' and 'atScope() and assignedTo('{{value}}')'."
            ),
        )
    };
    #[derive(PartialEq)]
    enum Term {
        AtScope,
        PrincipalEq(String),
        AssignedTo(String),
    }
    let lower = collapsed.to_ascii_lowercase();
    let mut terms = Vec::new();
    let mut start = 0;
    for (i, _) in lower.match_indices(" and ") {
        terms.push(&collapsed[start..i]);
        start = i + 5;
    }
    terms.push(&collapsed[start..]);
    let mut parsed = Vec::new();
    for t in terms {
        let tl = t.trim().to_ascii_lowercase();
        let term = if tl.replace(' ', "") == "atscope()" {
            Term::AtScope
        } else if let Some(rest) = tl.strip_prefix("principalid eq ") {
            let value = &t.trim()[t.trim().len() - rest.len()..];
            Term::PrincipalEq(unquote(value))
        } else if tl.starts_with("assignedto(") && tl.ends_with(')') {
            let inner = &t.trim()["assignedto(".len()..t.trim().len() - 1];
            Term::AssignedTo(unquote(inner))
        } else {
            return Err(unsupported());
        };
        parsed.push(term);
    }
    match parsed.as_slice() {
        [Term::AtScope] => Ok(Filter::AtScope),
        [Term::PrincipalEq(p)] | [Term::AssignedTo(p)] => Ok(Filter::Principal(p.clone())),
        [Term::AtScope, Term::AssignedTo(p)] | [Term::AssignedTo(p), Term::AtScope] => {
            Ok(Filter::AtScopePrincipal(p.clone()))
        }
        [Term::AtScope, Term::PrincipalEq(_)] | [Term::PrincipalEq(_), Term::AtScope] => {
            Err(arm_error(
                400,
                "UnsupportedQuery",
                &format!(
                    "The filter '{collapsed}' is not supported: 'atScope()' and 'principalId eq' cannot be combined. Use 'atScope() and assignedTo('{{value}}')'."
                ),
            ))
        }
        _ => Err(unsupported()),
    }
}

fn list_assignments(st: &State, r: &Req, scope_segs: &[String], endpoint: &str) -> Reply {
    if let Err(reply) = check_scope(st, scope_segs) {
        return reply;
    }
    let filter = match parse_filter(r.query_param("$filter").unwrap_or_default()) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let after = match skip_token(r) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let scope = norm_id(&scope_segs.join("/"));
    let page_size = st.faults.list_page_size.max(1);
    let mut page: Vec<(u64, &RoleAssignmentRecord)> = Vec::new();
    let mut more = false;
    for (seq, rec) in st.assignments.range(after.saturating_add(1)..) {
        let rs = norm_id(&rec.scope);
        let at_or_above = rs == scope || rs == "/" || scope.starts_with(&format!("{rs}/"));
        let below = rs.starts_with(&format!("{scope}/"));
        let keep = match &filter {
            Filter::All => at_or_above || below,
            Filter::AtScope => at_or_above,
            Filter::Principal(p) => {
                (at_or_above || below) && rec.principal_id.eq_ignore_ascii_case(p)
            }
            Filter::AtScopePrincipal(p) => at_or_above && rec.principal_id.eq_ignore_ascii_case(p),
        };
        if !keep {
            continue;
        }
        if page.len() == page_size {
            more = true;
            break;
        }
        page.push((*seq, rec));
    }
    let mut body = json!({
        "value": page
            .iter()
            .map(|(_, rec)| list_item(st, rec))
            .collect::<Vec<_>>()
    });
    if more && let Some((last, _)) = page.last() {
        body["nextLink"] = json!(next_link(r, endpoint, *last));
    }
    Reply::json(200, body)
}

/// An assignment as a LIST page shows it: `ra_body`, or malformed when `corrupt_in_list` says so.
fn list_item(st: &State, rec: &RoleAssignmentRecord) -> Value {
    let mut body = ra_body(rec);
    match st.corrupt_in_list.get(&rec.name.to_ascii_lowercase()) {
        None => {}
        Some(ListCorruption::PrincipalIdNumber) => {
            body["properties"]["principalId"] = json!(1_234_567_890_u64);
        }
        Some(ListCorruption::PropertiesString) => {
            body["properties"] = json!(format!("corrupted by the emulator: {}", rec.id));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(parse_filter("").ok(), Some(Filter::All));
        assert_eq!(parse_filter("atScope()").ok(), Some(Filter::AtScope));
        assert_eq!(parse_filter(" atscope( ) ").ok(), Some(Filter::AtScope));
        assert_eq!(
            parse_filter("principalId eq 'AbC'").ok(),
            Some(Filter::Principal("AbC".to_string()))
        );
        assert_eq!(
            parse_filter("assignedTo('x')").ok(),
            Some(Filter::Principal("x".to_string()))
        );
        assert_eq!(
            parse_filter("atScope() and assignedTo('x')").ok(),
            Some(Filter::AtScopePrincipal("x".to_string()))
        );
        assert_eq!(
            parse_filter("atScope() and principalId eq 'x'")
                .err()
                .map(|r| r.status),
            Some(400)
        );
        assert_eq!(
            parse_filter("roleDefinitionId eq 'x'")
                .err()
                .map(|r| r.status),
            Some(400)
        );
    }

    #[test]
    fn role_definition_ids() {
        assert_eq!(
            role_definition_guid(
                "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"
            ),
            Some("7f951dda-4ed3-4680-a7ca-43fe172d538d".to_string())
        );
        assert_eq!(
            role_definition_guid(
                "/providers/microsoft.authorization/roleDefinitions/7F951DDA-4ED3-4680-A7CA-43FE172D538D"
            ),
            Some("7f951dda-4ed3-4680-a7ca-43fe172d538d".to_string())
        );
        assert_eq!(
            role_definition_guid("7f951dda-4ed3-4680-a7ca-43fe172d538d"),
            None
        );
    }
}
