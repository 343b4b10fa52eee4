//! Prometheus metrics: reconcile outcomes and latency, ARM requests by operation and status, ARM's
//! throttling (429s, Retry-After waited, remaining budget), attachments by Ready reason, time from a
//! spec change to Ready, deferred re-verifications, leadership and build info. Served on
//! `/metrics` by `http`.

use std::sync::Mutex;
use std::time::Duration;

use azure_core::http::headers::{HeaderName, Headers};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::azure::Operation;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttachmentLabels {
    /// The Ready condition's status: True, False or Unknown (no status written yet).
    pub ready: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
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
    arm_throttled: Counter,
    arm_retry_after_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    attachments: Family<AttachmentLabels, Gauge>,
    generation_to_ready_seconds: Histogram,
    verification_deferred: Family<ReasonLabels, Counter>,
    malformed_list_items: Family<OperationLabels, Counter>,
    leader: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
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
        let arm_throttled = Counter::default();
        registry.register(
            "arm_throttled",
            "ARM answers of 429 Too Many Requests",
            arm_throttled.clone(),
        );
        let arm_retry_after_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "arm_retry_after_seconds",
            "Seconds ARM asked the operator to wait (Retry-After of 429 answers); requests to that subscription are held back meanwhile",
            arm_retry_after_seconds.clone(),
        );
        let attachments = Family::<AttachmentLabels, Gauge>::default();
        registry.register(
            "attachments",
            "RegistryAttachments by the status and reason of their Ready condition",
            attachments.clone(),
        );
        let generation_to_ready_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 14));
        registry.register(
            "generation_to_ready_seconds",
            "Time from a new generation of a RegistryAttachment (creation or spec change) to Ready=True for it",
            generation_to_ready_seconds.clone(),
        );
        let malformed_list_items = Family::<OperationLabels, Counter>::default();
        registry.register(
            "arm_malformed_list_items",
            "Elements of ARM list pages that could not be read and were skipped",
            malformed_list_items.clone(),
        );
        let verification_deferred = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "verification_deferred",
            "Re-verifications of a Ready attachment that failed transiently and were retried (Ready stays True; status.lastSyncTime ages)",
            verification_deferred.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the leader and reconciles, 0 while it is a standby",
            leader.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the version of this binary in the label",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        Self {
            registry: Mutex::new(registry),
            reconciliations,
            reconcile_seconds,
            arm_requests,
            arm_budget,
            arm_throttled,
            arm_retry_after_seconds,
            attachments,
            generation_to_ready_seconds,
            verification_deferred,
            malformed_list_items,
            leader,
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

    /// A 429 whose Retry-After holds back the subscription for `wait`.
    pub fn arm_throttled(&self, wait: Duration) {
        self.arm_throttled.inc();
        self.arm_retry_after_seconds.inc_by(wait.as_secs_f64());
    }

    /// Replaces the attachment counts by Ready status and reason.
    pub fn set_attachments(&self, counts: impl IntoIterator<Item = (AttachmentLabels, i64)>) {
        self.attachments.clear();
        for (labels, count) in counts {
            self.attachments.get_or_create(&labels).set(count);
        }
    }

    pub fn generation_ready(&self, took: Duration) {
        self.generation_to_ready_seconds.observe(took.as_secs_f64());
    }

    pub fn verification_deferred(&self, reason: &str) {
        self.verification_deferred
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn malformed_list_item(&self, operation: Operation) {
        self.malformed_list_items
            .get_or_create(&OperationLabels {
                operation: operation.as_str().to_string(),
            })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
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
