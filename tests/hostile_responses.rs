//! Malformed and hostile answers from ARM, through the production client over HTTPS: a proxy's
//! HTML error page, truncated JSON, wrong types, missing fields, a body of 20 MiB, a `nextLink` to
//! another host, endless paging. Each must become a classified error with a bounded message —
//! never a panic, never a message carrying the body whole — and a reconcile meeting one must
//! report it in a condition and retry.

mod common;

use std::sync::Arc;

use acr_attach::azure::AzureApi;
use acr_attach::decide::failure::{Classify, ErrorClass};
use acr_attach::decide::reasons;
use acr_attach::metrics::Metrics;
use acr_attach::model::RegistryId;
use arm_emulator::{Operation, RawAnswer};
use common::*;

const PROXY_PAGE: &str = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>corporate-proxy</center></body></html>";

fn kubelet() -> acr_attach::controller::KubeletIdentity {
    acr_attach::controller::KubeletIdentity::ObjectId(
        acr_attach::model::PrincipalId::parse(KUBELET).unwrap(),
    )
}

fn answer(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> RawAnswer {
    RawAnswer {
        status,
        content_type: content_type.to_string(),
        body: body.into(),
    }
}

fn json(status: u16, body: &str) -> RawAnswer {
    answer(status, "application/json; charset=utf-8", body)
}

async fn client(h: &Harness) -> acr_attach::azure::arm::ArmClient {
    h.azure_settings()
        .arm_client(Arc::new(Metrics::default()))
        .expect("ARM client")
}

fn legacy() -> RegistryId {
    RegistryId::parse(&registry("legacyacr")).unwrap()
}

#[tokio::test]
async fn malformed_registry_answers_are_classified_errors_with_bounded_messages() {
    let h = Harness::start(tenant(), kubelet()).await;
    let azure = client(&h).await;
    let huge_html = format!("<html>{}</html>", "x".repeat(20 << 20));
    let huge_json_message = format!(
        r#"{{"error":{{"code":"InternalServerError","message":"{}"}}}}"#,
        "m".repeat(20 << 20)
    );
    let cases: Vec<(&str, RawAnswer, ErrorClass)> = vec![
        (
            "a proxy's HTML 502",
            answer(502, "text/html", PROXY_PAGE),
            ErrorClass::RetrySoon,
        ),
        (
            "an HTML 403 from a proxy",
            answer(403, "text/html", "<html>Forbidden by policy</html>"),
            ErrorClass::NeedsHuman,
        ),
        (
            "20 MiB of HTML with a 500",
            answer(500, "text/html", huge_html),
            ErrorClass::RetrySoon,
        ),
        (
            "a 20 MiB JSON error message",
            json(500, &huge_json_message),
            ErrorClass::RetrySoon,
        ),
        (
            "truncated JSON with a 200",
            json(
                200,
                r#"{"id": "/subscriptions/00000000-0000-4000-8000-00000"#,
            ),
            ErrorClass::NeedsHuman,
        ),
        (
            "wrong types with a 200",
            json(200, r#"{"id": 5, "properties": []}"#),
            ErrorClass::NeedsHuman,
        ),
        (
            "properties missing with a 200",
            json(200, r#"{"id": "/x"}"#),
            ErrorClass::NeedsHuman,
        ),
        (
            "an empty 200",
            answer(200, "application/json", ""),
            ErrorClass::NeedsHuman,
        ),
        (
            "HTML with a 200 (a captive portal)",
            answer(200, "text/html", PROXY_PAGE),
            ErrorClass::NeedsHuman,
        ),
    ];
    for (what, raw, class) in cases {
        h.arm.answer_next_raw(Operation::GetRegistry, raw);
        let error = azure
            .get_registry(&legacy())
            .await
            .expect_err(&format!("{what}: must be an error"));
        let failure = error.classify();
        assert_eq!(failure.class, class, "{what}: {failure:?}");
        assert!(
            failure.message.len() < 2048,
            "{what}: the message is bounded, not the body: {} bytes",
            failure.message.len()
        );
    }
    // The client is fine afterwards.
    assert!(azure.get_registry(&legacy()).await.is_ok());
}

#[tokio::test]
async fn hostile_list_pages_end_in_an_error_not_a_loop() {
    let h = Harness::start(tenant(), kubelet()).await;
    let azure = client(&h).await;
    let registry = legacy();

    // `value` is not a list.
    h.arm.answer_next_raw(
        Operation::ListRoleAssignments,
        json(200, r#"{"value": {"id": "x"}}"#),
    );
    let error = azure.list_role_assignments(&registry).await.unwrap_err();
    assert_eq!(error.classify().class, ErrorClass::NeedsHuman);

    // A nextLink to another host: the token is never sent there.
    h.arm.answer_next_raw(
        Operation::ListRoleAssignments,
        json(
            200,
            r#"{"value": [], "nextLink": "https://attacker.example/subscriptions/x"}"#,
        ),
    );
    let error = azure.list_role_assignments(&registry).await.unwrap_err();
    assert!(
        error.to_string().contains("outside the ARM endpoint"),
        "{error}"
    );

    // Endless paging: every page links to the next, forever.
    let endpoint = h.arm.endpoint();
    let next = format!(
        r#"{{"value": [], "nextLink": "{endpoint}{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=atScope()&$skipToken=1"}}"#,
        registry.as_str()
    );
    for _ in 0..250 {
        h.arm
            .answer_next_raw(Operation::ListRoleAssignments, json(200, &next));
    }
    h.arm.reset_counts();
    let error = azure.list_role_assignments(&registry).await.unwrap_err();
    assert!(error.to_string().contains("pages"), "{error}");
    let pages = h.arm.counts().get(Operation::ListRoleAssignments);
    assert!(
        pages <= 200,
        "gave up after a bounded number of pages: {pages}"
    );
}

#[tokio::test]
async fn a_reconcile_meeting_a_proxy_page_reports_it_and_retries() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.arm
        .answer_next_raw(Operation::GetRegistry, answer(502, "text/html", PROXY_PAGE));
    h.cluster.create("shared", spec(&registry("legacyacr")));
    let next = h
        .reconcile("shared")
        .await
        .expect("no panic, no hard error");
    assert!(requeue_after(&next).is_some(), "retried: {next:?}");
    let reconciling = h.condition("shared", "Reconciling");
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", reasons::AZURE_UNAVAILABLE)
    );
    assert!(
        reconciling.message.contains("502"),
        "{}",
        reconciling.message
    );
    h.clock.advance(std::time::Duration::from_secs(10));
    h.settle("shared").await;
    assert_eq!(h.condition("shared", "Ready").status, "True");
}
