//! Prometheus metrics: reconcile outcomes and latency, ARM requests by operation and status, and
//! ARM's remaining rate-limit budget as last reported. Served on `/metrics` by `http`.

use std::sync::Mutex;
use std::time::Duration;

use azure_core::http::headers::{HeaderName, Headers};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::azure::error::Operation;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmLabels {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    kind: String,
}

const RATE_LIMIT_HEADERS: [(&str, &str); 3] = [
    ("x-ms-ratelimit-remaining-subscription-reads", "reads"),
    ("x-ms-ratelimit-remaining-subscription-writes", "writes"),
    ("x-ms-ratelimit-remaining-subscription-deletes", "deletes"),
];

pub struct Metrics {
    registry: Mutex<Registry>,
    reconciliations: Family<OutcomeLabels, Counter>,
    reconcile_seconds: Histogram,
    arm_requests: Family<ArmLabels, Counter>,
    arm_budget: Family<BudgetLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("acr_attach");
        let reconciliations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciliations by outcome (ready, progressing, stalled, detached, error)",
            reconciliations.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            reconcile_seconds.clone(),
        );
        let arm_requests = Family::<ArmLabels, Counter>::default();
        registry.register(
            "arm_requests",
            "Azure Resource Manager requests by operation and HTTP status (or error kind)",
            arm_requests.clone(),
        );
        let arm_budget = Family::<BudgetLabels, Gauge>::default();
        registry.register(
            "arm_ratelimit_remaining",
            "Remaining ARM request budget for the operator's identity, as last reported by ARM",
            arm_budget.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reconciliations,
            reconcile_seconds,
            arm_requests,
            arm_budget,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, outcome: &str, took: Duration) {
        self.reconciliations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    pub fn arm_request(&self, operation: Operation, status: &str) {
        self.arm_requests
            .get_or_create(&ArmLabels {
                operation: operation.as_str().to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn observe_rate_limits(&self, headers: &Headers) {
        for (header, kind) in RATE_LIMIT_HEADERS {
            let remaining = headers
                .get_optional_str(&HeaderName::from_static(header))
                .and_then(|value| value.trim().parse::<i64>().ok());
            if let Some(remaining) = remaining {
                self.arm_budget
                    .get_or_create(&BudgetLabels {
                        kind: kind.to_string(),
                    })
                    .set(remaining);
            }
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
