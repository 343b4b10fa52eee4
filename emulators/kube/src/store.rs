//! In-memory object storage with one global resourceVersion counter (like etcd's revision)
//! and the ordered change history that watches replay.

use crate::LoggedRequest;
use crate::resources::{ResourceType, builtins, types_from_crd};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};

pub type ResKey = (String, String);
pub type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One persisted change. `old` is the previous state (for selector transitions).
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub key: ResKey,
    pub namespace: String,
    pub kind: EventType,
    pub old: Option<Value>,
    pub obj: Value,
}

/// History kept for watches; older changes are compacted away (watching from before them
/// yields the 410 ERROR event, as after an etcd compaction).
const HISTORY_LIMIT: usize = 50_000;

pub struct Store {
    pub rv: u64,
    /// Watches from a resourceVersion below this are "too old".
    pub floor: u64,
    /// Bumped by `compact()`; open watch streams end when it changes.
    pub epoch: u64,
    pub objects: BTreeMap<ResKey, BTreeMap<ObjKey, Value>>,
    pub history: VecDeque<Change>,
    pub types: Vec<ResourceType>,
    pub log: Vec<LoggedRequest>,
    pub notify: tokio::sync::watch::Sender<(u64, u64)>,
}

impl Store {
    pub fn new() -> Store {
        let (notify, _) = tokio::sync::watch::channel((0, 0));
        let mut s = Store {
            rv: 0,
            floor: 0,
            epoch: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            types: builtins(),
            log: Vec::new(),
            notify,
        };
        let ns_type = s
            .types
            .iter()
            .find(|t| t.plural == "namespaces")
            .cloned()
            .expect("namespaces is built in");
        let (now, _) = crate::util::now();
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                             "creationTimestamp": crate::util::rfc3339(now),
                             "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            s.write(&ns_type, obj, None);
        }
        s
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn get(&self, res: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&res.key())?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a type, ordered by (namespace, name); `ns == None` means all namespaces.
    pub fn list(&self, res: &ResourceType, ns: Option<&str>) -> Vec<&Value> {
        match self.objects.get(&res.key()) {
            Some(m) => m
                .iter()
                .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                .map(|(_, v)| v)
                .collect(),
            None => Vec::new(),
        }
    }

    fn record(&mut self, change: Change) {
        self.history.push_back(change);
        while self.history.len() > HISTORY_LIMIT {
            if let Some(c) = self.history.pop_front() {
                self.floor = c.rv;
            }
        }
        self.notify.send_replace((self.rv, self.epoch));
    }

    /// Persists `obj` (new resourceVersion) and returns the stored copy.
    pub fn write(&mut self, res: &ResourceType, mut obj: Value, old: Option<Value>) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let meta = crate::util::meta_mut(&mut obj);
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.objects
            .entry(res.key())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv,
            key: res.key(),
            namespace: ns,
            kind,
            old,
            obj: obj.clone(),
        });
        obj
    }

    /// Removes an object; the DELETED event carries the deletion's resourceVersion and the
    /// final state (`last`, e.g. without its last finalizer), defaulting to the stored one.
    pub fn remove(
        &mut self,
        res: &ResourceType,
        ns: &str,
        name: &str,
        last: Option<Value>,
    ) -> Option<Value> {
        let key = res.key();
        let removed = self
            .objects
            .get_mut(&key)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let rv = self.rv;
        let mut last = last.unwrap_or_else(|| removed.clone());
        crate::util::meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(Change {
            rv,
            key,
            namespace: ns.to_string(),
            kind: EventType::Deleted,
            old: Some(removed),
            obj: last.clone(),
        });
        Some(last)
    }

    /// Re-derives the served types from the stored CRDs.
    pub fn rebuild_types(&mut self) {
        let mut types = builtins();
        let crd_key = (
            "apiextensions.k8s.io".to_string(),
            "customresourcedefinitions".to_string(),
        );
        if let Some(crds) = self.objects.get(&crd_key) {
            for crd in crds.values() {
                types.extend(types_from_crd(crd));
            }
        }
        self.types = types;
    }

    /// Test hook: forget the history so every resourceVersion handed out so far is too old,
    /// and end open watches (their clients re-watch and get the 410 ERROR event).
    pub fn compact(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
        self.epoch += 1;
        self.notify.send_replace((self.rv, self.epoch));
    }

    /// Changes after `rv` (exclusive) for one type, in order.
    pub fn changes_since(&self, key: &ResKey, rv: u64) -> Vec<Change> {
        let start = self.history.partition_point(|c| c.rv <= rv);
        self.history
            .iter()
            .skip(start)
            .filter(|c| &c.key == key)
            .cloned()
            .collect()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}
