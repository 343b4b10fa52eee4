//! Repository scopes on ABAC registries: `spec.repositories` entries (exact names and `prefix/*`)
//! checked, and rendered into the ABAC condition of a Container Registry Repository Reader
//! assignment, in the form Azure's documentation gives (conditionVersion 2.0).
//!
//! A prefix always ends in `/`, so `team-a/*` never matches `team-ab/...`. Names are checked
//! against the OCI repository-name grammar, which also keeps quotes out of the condition.

use std::fmt;

pub const CONDITION_VERSION: &str = "2.0";

const CONTENT_READ: &str = "Microsoft.ContainerRegistry/registries/repositories/content/read";
const METADATA_READ: &str = "Microsoft.ContainerRegistry/registries/repositories/metadata/read";
const NAME_ATTRIBUTE: &str = "@Request[Microsoft.ContainerRegistry/registries/repositories:name]";

/// One entry of `spec.repositories`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RepositoryPattern {
    /// `nginx`, `team-a/api`: that repository only.
    Exact(String),
    /// `team-a/*`: every repository under `team-a/` (stored with the trailing slash).
    Prefix(String),
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryPattern::Exact(name) => f.write_str(name),
            RepositoryPattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// One path component: `[a-z0-9]+` runs joined by `.`, `_`, `__` or dashes.
fn component_is_valid(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(b) {
            if !(separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.bytes().all(|s| s == b'-'))
            {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

fn name_is_valid(name: &str) -> bool {
    name.len() <= 256 && name.split('/').all(component_is_valid)
}

/// Parses one entry; the error says what is wrong and how to write it, quoting at most the first
/// 64 characters of the entry so that a huge value cannot bloat the condition.
pub fn parse_pattern(entry: &str) -> Result<RepositoryPattern, String> {
    let quoted = || {
        let shown: String = entry.chars().take(64).collect();
        if shown.len() < entry.len() {
            format!("{shown:?}…")
        } else {
            format!("{shown:?}")
        }
    };
    let (name, prefix) = match entry.strip_suffix("/*") {
        Some(stem) => (stem, true),
        None => (entry, false),
    };
    if entry == "*" || entry.is_empty() {
        return Err(format!(
            "{} is not a repository: leave spec.repositories empty to grant the whole registry",
            quoted()
        ));
    }
    if name.contains('*') {
        return Err(format!(
            "{}: a wildcard is only allowed as a final \"/*\" (e.g. \"team-a/*\")",
            quoted()
        ));
    }
    if !name_is_valid(name) {
        return Err(format!(
            "{} is not a repository name: use lower-case letters, digits and '.', '_', '-' separators, with '/' between path components (e.g. \"team-a/api\" or \"team-a/*\")",
            quoted()
        ));
    }
    Ok(if prefix {
        RepositoryPattern::Prefix(format!("{name}/"))
    } else {
        RepositoryPattern::Exact(name.to_string())
    })
}

/// The condition that limits Repository Reader to `patterns` (non-empty, in a stable order), in
/// the single-line form Azure CLI stores for the documented multi-line example.
pub fn render_condition(patterns: &[RepositoryPattern]) -> String {
    let tests: Vec<String> = patterns
        .iter()
        .map(|pattern| match pattern {
            RepositoryPattern::Exact(name) => {
                format!("{NAME_ATTRIBUTE} StringEqualsIgnoreCase '{name}'")
            }
            RepositoryPattern::Prefix(prefix) => {
                format!("{NAME_ATTRIBUTE} StringStartsWithIgnoreCase '{prefix}'")
            }
        })
        .collect();
    format!(
        "( (  !(ActionMatches{{'{CONTENT_READ}'}})  AND  !(ActionMatches{{'{METADATA_READ}'}}) ) OR  (  {} ))",
        tests.join("  OR  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented single-repository example after the doc's `tr -d '\n'`, as the CLI
    /// prints it back (azure-facts §3).
    const DOCUMENTED_NGINX: &str = "( (  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})  AND  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'}) ) OR  (  @Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase 'nginx' ))";

    /// The documented multi-line examples, joined the same way.
    fn documented(lines: &[&str]) -> String {
        lines.concat()
    }

    #[test]
    fn a_single_repository_renders_exactly_as_documented() {
        assert_eq!(
            render_condition(&[parse_pattern("nginx").unwrap()]),
            DOCUMENTED_NGINX
        );
    }

    #[test]
    fn several_prefixes_render_as_the_documented_or_of_prefixes() {
        let expected = documented(&[
            "(",
            " (",
            "  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})",
            "  AND",
            "  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'})",
            " )",
            " OR ",
            " (",
            "  @Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'backend/'",
            "  OR",
            "  @Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'frontend/js/'",
            " )",
            ")",
        ]);
        let patterns = [
            parse_pattern("backend/*").unwrap(),
            parse_pattern("frontend/js/*").unwrap(),
        ];
        assert_eq!(render_condition(&patterns), expected);
    }

    #[test]
    fn a_prefix_always_ends_in_a_slash() {
        assert_eq!(
            parse_pattern("team-a/*"),
            Ok(RepositoryPattern::Prefix("team-a/".to_string()))
        );
        assert!(render_condition(&[parse_pattern("team-a/*").unwrap()]).contains("'team-a/'"));
    }

    #[test]
    fn bad_entries_are_refused_with_the_fix() {
        for bad in [
            "*",
            "",
            "team-a*",
            "team-a/*/x",
            "Team-A",
            "a'b",
            "a b",
            "/leading",
            "trailing/",
            "a//b",
        ] {
            let error = parse_pattern(bad).unwrap_err();
            assert!(
                error.contains("e.g.") || error.contains("empty"),
                "{bad}: {error}"
            );
        }
        for good in [
            "nginx",
            "team-a/api",
            "a.b_c__d--e/f",
            "x/*",
            "library/ubuntu",
        ] {
            assert!(parse_pattern(good).is_ok(), "{good}");
        }
    }
}
