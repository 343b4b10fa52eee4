//! The operator's own HTTP endpoint: `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Ready once the controller has listed every RegistryAttachment (its watch cache is warm), on
/// the leader and on a standby alike: both are healthy members of the Deployment. The body says
/// which role this replica has.
#[derive(Default)]
pub struct Readiness {
    synced: AtomicBool,
    leading: AtomicBool,
}

impl Readiness {
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }
    pub fn role(&self) -> &'static str {
        if self.leading.load(Ordering::SeqCst) {
            "leader"
        } else {
            "standby"
        }
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

async fn ready(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    let readiness = &endpoints.readiness;
    if readiness.is_synced() {
        (StatusCode::OK, readiness.role())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "watch cache not synced yet",
        )
    }
}

async fn render_metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    let metrics = endpoints.metrics;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Endpoints { metrics, readiness })
}

pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    serve_on(listener, metrics, readiness).await
}

/// Serves on a listener bound earlier (so a bind failure can stop the start).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, readiness)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).to_string())
    }

    #[tokio::test]
    async fn readyz_waits_for_the_watch_cache_and_metrics_are_exposed() {
        let metrics = Arc::new(Metrics::default());
        metrics.reconciled("ready", std::time::Duration::from_millis(3));
        let readiness = Arc::new(Readiness::default());
        let app = router(metrics, readiness.clone());
        assert_eq!(
            get(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_synced();
        assert_eq!(
            get(app.clone(), "/readyz").await,
            (StatusCode::OK, "standby".to_string())
        );
        readiness.set_leading(true);
        assert_eq!(
            get(app.clone(), "/readyz").await,
            (StatusCode::OK, "leader".to_string())
        );
        assert_eq!(get(app.clone(), "/healthz").await.0, StatusCode::OK);
        let (status, body) = get(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("acr_attach_reconciliations_total{outcome=\"ready\"} 1"),
            "{body}"
        );
    }
}
