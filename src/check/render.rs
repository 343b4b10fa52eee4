//! The answer of `acr-attach check` as a whole (`Report`) and its two renderings: a table for
//! people (one row per registry, then the problems with their fixes, then the warnings) and JSON
//! for scripts, with the stable field names documented in `check`.

use serde::Serialize;

use crate::decide::delegation::{self, Access, AccessState};
use crate::decide::preflight::{AssignmentState, Finding, RegistryReport};
use crate::model::PermissionsMode;

/// The whole answer; see the `check` module documentation for the JSON field names.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub ok: bool,
    pub operator_object_id: Option<String>,
    pub owner_id: String,
    pub kubelet_identity: KubeletReport,
    pub registries: Vec<RegistryReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletReport {
    pub source: KubeletSource,
    pub object_id: Option<String>,
}

/// Where the kubelet identity comes from: `--kubelet-object-id`, `--cluster-resource-id`, neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeletSource {
    Flag,
    Cluster,
    Unconfigured,
}

pub fn json(report: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

const HEADERS: [&str; 8] = [
    "REGISTRY",
    "ATTACHMENT",
    "MODE",
    "ROLE",
    "PRINCIPAL",
    "ASSIGNMENT",
    "OPERATOR MAY WRITE",
    "RESULT",
];

pub fn table(report: &Report) -> String {
    let rows: Vec<[String; 8]> = report.registries.iter().map(row).collect();
    let mut out = columns(&rows);
    if report.registries.is_empty() {
        out.push_str("(no RegistryAttachments in the cluster; pass --registry to check one)\n");
    }
    out.push_str(&findings("Problems", report, |r| &r.problems));
    out.push_str(&findings("Warnings", report, |r| &r.warnings));
    out
}

fn row(r: &RegistryReport) -> [String; 8] {
    let assignment = match r.assignment.state {
        AssignmentState::Missing if r.ok => "missing, will be created",
        AssignmentState::Missing => "missing",
        AssignmentState::Created => "created",
        AssignmentState::Adopted => "adopted",
        AssignmentState::Unknown => "unknown",
    };
    let mode = match r.permissions_mode {
        Some(mode) if mode == PermissionsMode::AbacRepository.as_arm() => "ABAC",
        Some(_) => "Legacy",
        None => "-",
    };
    let result = if !r.ok {
        "FAIL"
    } else if r.warnings.is_empty() {
        "ok"
    } else {
        "ok (warnings)"
    };
    [
        r.name.clone(),
        r.attachment
            .as_deref()
            .unwrap_or("(--registry)")
            .to_string(),
        mode.to_string(),
        r.role.unwrap_or("-").to_string(),
        r.principal
            .as_ref()
            .map_or("-", |p| p.object_id.as_str())
            .to_string(),
        assignment.to_string(),
        access_cell(&r.write),
        result.to_string(),
    ]
}

fn access_cell(access: &Access) -> String {
    match access.state {
        AccessState::Allowed => "yes".to_string(),
        AccessState::Denied => "no".to_string(),
        AccessState::Conditioned => {
            let verdict = if access.permits() { "yes" } else { "no" };
            format!("{verdict}, {}", delegation::describe(&access.conditions))
        }
        AccessState::Unknown => "-".to_string(),
    }
}

/// The header and `rows`, each column as wide as its widest cell, without trailing blanks.
fn columns(rows: &[[String; 8]]) -> String {
    let mut widths = HEADERS.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(&HEADERS.map(str::to_string));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// "\n<title>:" and one item per finding of every registry (empty when there are none).
fn findings(title: &str, report: &Report, pick: fn(&RegistryReport) -> &Vec<Finding>) -> String {
    let mut out = String::new();
    for r in &report.registries {
        let who = match &r.attachment {
            Some(name) => format!("{} ({name})", r.name),
            None => r.name.clone(),
        };
        for finding in pick(r) {
            out.push_str(&format!(
                "- {who}: {} [{}]\n",
                finding.message, finding.code
            ));
            if !finding.fix.is_empty() {
                out.push_str(&format!("  fix: {}\n", finding.fix));
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    format!("\n{title}:\n{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(registries: Vec<RegistryReport>) -> Report {
        Report {
            ok: registries.iter().all(|r| r.ok),
            operator_object_id: None,
            owner_id: "owner".to_string(),
            kubelet_identity: KubeletReport {
                source: KubeletSource::Unconfigured,
                object_id: None,
            },
            registries,
        }
    }

    const REGISTRY: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/";

    #[test]
    fn the_table_aligns_columns_and_lists_findings_with_their_fixes() {
        let mut failing = RegistryReport::new(&format!("{REGISTRY}first"), Some("a".to_string()));
        failing.problem(Finding::new("Code", "it breaks", "do this"));
        let mut fine = RegistryReport::new(&format!("{REGISTRY}secondregistry"), None);
        fine.assignment.state = AssignmentState::Missing;
        fine.warnings.push(Finding::new("Other", "mind this", ""));
        let text = table(&report(vec![failing, fine]));
        let lines: Vec<&str> = text.lines().collect();
        // Every cell starts where its header does.
        let at = |header: &str| lines[0].find(header).unwrap();
        let cells = |line: &str, expected: [&str; 8]| {
            for (header, cell) in HEADERS.iter().zip(expected) {
                assert!(line[at(header)..].starts_with(cell), "{header}: {line}");
            }
        };
        cells(
            lines[1],
            ["first", "a", "-", "-", "-", "unknown", "-", "FAIL"],
        );
        cells(
            lines[2],
            [
                "secondregistry",
                "(--registry)",
                "-",
                "-",
                "-",
                "missing, will be created",
                "-",
                "ok (warnings)",
            ],
        );
        assert_eq!(at("ATTACHMENT"), "secondregistry  ".len());
        assert!(lines.iter().all(|l| l.trim_end() == *l));
        let rest = lines[3..].join("\n");
        assert_eq!(
            rest,
            "\nProblems:\n- first (a): it breaks [Code]\n  fix: do this\n\nWarnings:\n- secondregistry: mind this [Other]"
        );
    }

    #[test]
    fn an_empty_cluster_says_how_to_check_one_registry() {
        let text = table(&report(Vec::new()));
        assert!(text.contains("pass --registry to check one"));
        assert!(!text.contains("Problems"));
    }

    #[test]
    fn json_keeps_the_documented_names_and_values() {
        let mut one = RegistryReport::new(&format!("{REGISTRY}first"), None);
        one.assignment.state = AssignmentState::Adopted;
        let value: serde_json::Value =
            serde_json::from_str(&json(&report(vec![one])).unwrap()).unwrap();
        assert_eq!(value["kubeletIdentity"]["source"], "unconfigured");
        let first = &value["registries"][0];
        assert_eq!(first["assignment"]["state"], "adopted");
        assert_eq!(first["write"]["state"], "unknown");
        assert_eq!(first["write"]["permitsRole"], serde_json::Value::Null);
        assert_eq!(first["permissionsMode"], serde_json::Value::Null);
        assert_eq!(first["roleDefinitionId"], serde_json::Value::Null);
        assert!(first["problems"].as_array().unwrap().is_empty());
    }
}
