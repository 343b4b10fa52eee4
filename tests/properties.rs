//! Property tests: the parsers, the condition renderer and the planner hold their promises for
//! generated inputs, not only for the examples the unit tests pick.
//!
//! - resource ids: no input makes a parser panic; ids built from valid parts parse back to those
//!   parts, compare case-insensitively, and stop parsing after any shape-breaking edit; the CRD's
//!   `REGISTRY_ID_PATTERN` and `RegistryId::parse` agree;
//! - `validate` refuses with field errors that name a `spec.` field, whatever the spec holds;
//! - repository patterns: the rendered ABAC condition does not depend on order or duplicates, is
//!   compared without whitespace but with the names, never carries a quote, and a prefix
//!   `team-a/*` never grants `team-ab/...` (checked with the ARM emulator's condition evaluator);
//! - the planner only ever deletes or leaves an assignment acr-attach provably made from one of
//!   the attachment's records, never one a wanted grant rests on, and decides the same twice;
//! - a registry looked up by name resolves only to a registry of that name, and only when the
//!   list has exactly one;
//! - the allow-list's check of a lookup scope never refuses a scope holding an allowed registry.
//!
//! Failures are not persisted to a regressions file: a failing case found here is added as a
//! named regression test instead.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use acr_attach::crd::{
    DeletionPolicy, OwnedAssignment, PrincipalKind, PrincipalReference, PrincipalSpec,
    REGISTRY_ID_PATTERN, RegistryAttachmentSpec, RegistryReference, RoleChoice,
};
use acr_attach::decide::allowlist::AllowList;
use acr_attach::decide::claims::Claims;
use acr_attach::decide::ownership::{self, Owners};
use acr_attach::decide::plan::{Plan, PlanInput, Release, Step, plan, record_of};
use acr_attach::decide::reasons;
use acr_attach::decide::registry_lookup::{ListScope, list_scope, resolve};
use acr_attach::decide::repositories::{RepositoryPattern, parse_pattern, render_condition};
use acr_attach::decide::validate::validate;
use acr_attach::model::azure::{Registry, RoleAssignment};
use acr_attach::model::grant::{Condition, Grant};
use acr_attach::model::{
    ClusterId, IdentityId, OwnerId, PrincipalId, PrincipalType, PullRole, RegistryId,
    RegistryLookup, RoleAssignmentName,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// proptest's defaults (256 cases), without writing a regressions file next to this one.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

static REGISTRY_PATTERN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(REGISTRY_ID_PATTERN).unwrap());

// ---------------------------------------------------------------------------------------------
// Generators shared by the id properties.

/// Characters that break naive parsers: NUL and other controls, '/', non-ASCII letters whose
/// case folds onto ASCII ones, zero-width and replacement characters, and anything else.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => any::<char>(),
        1 => Just('\0'),
        1 => proptest::char::range('\u{1}', '\u{1f}'),
        1 => Just('\u{7f}'),
        2 => Just('/'),
        2 => prop::sample::select(vec![
            '\u{17f}', '\u{212a}', '\u{130}', '\u{fffd}', '\u{200b}', '\u{feff}', '\u{a0}', 'é',
            'ß', '\'', '"', '\\', ' ', '\n', '*',
        ]),
    ]
}

fn guid() -> impl Strategy<Value = String> {
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
}

/// Resource group names in ARM's ASCII alphabet: 1-90 characters, not ending in '.'.
fn ascii_group() -> impl Strategy<Value = String> {
    "[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]"
}

/// Resource group names with Unicode letters and digits, which Azure allows but neither the CRD
/// pattern nor `check_resource_group` admits (they agree to refuse them).
fn unicode_group() -> impl Strategy<Value = String> {
    "[-\\p{Alphabetic}\\p{N}_.()]{0,12}[-\\p{Alphabetic}\\p{N}_()]"
}

fn registry_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]{5,50}"
}

/// (subscription, resource group, name) of a valid registry id, ASCII only.
fn ascii_parts() -> impl Strategy<Value = (String, String, String)> {
    (guid(), ascii_group(), registry_name())
}

/// (subscription, resource group, name) of a valid registry id, the group sometimes Unicode.
fn parts() -> impl Strategy<Value = (String, String, String)> {
    (guid(), ascii_group(), registry_name())
}

fn registry_text(subscription: &str, group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

/// Swaps the ASCII case of the characters `flips` selects (cycled over the text).
fn flip_case(text: &str, flips: &[bool]) -> String {
    text.chars()
        .zip(flips.iter().cycle())
        .map(|(c, flip)| match (flip, c.is_ascii_lowercase()) {
            (false, _) => c,
            (true, true) => c.to_ascii_uppercase(),
            (true, false) => c.to_ascii_lowercase(),
        })
        .collect()
}

fn splice(text: &str, insertions: &[(Index, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, c) in insertions {
        let at = at.index(chars.len() + 1);
        chars.insert(at, *c);
    }
    chars.into_iter().collect()
}

/// Anything: random characters, hostile characters spliced into ids, and very long strings.
fn arbitrary_text() -> impl Strategy<Value = String> {
    let id = || parts().prop_map(|(s, g, n)| registry_text(&s, &g, &n));
    prop_oneof![
        4 => vec(hostile_char(), 0..80).prop_map(String::from_iter),
        2 => any::<String>(),
        4 => (id(), vec((any::<Index>(), hostile_char()), 1..4))
            .prop_map(|(id, insertions): (String, Vec<(Index, char)>)| splice(&id, &insertions)),
        1 => (vec(hostile_char(), 1..6), 1_000..20_000usize)
            .prop_map(|(unit, times)| String::from_iter(unit).repeat(times)),
        1 => (id(), 2..2_000usize).prop_map(|(id, times)| id.repeat(times)),
    ]
}

/// One edit that makes a valid registry id the wrong shape.
#[derive(Clone, Debug)]
enum Breakage {
    /// A '/' inserted anywhere: one segment too many (or an empty one).
    ExtraSlash(Index),
    /// One of the eight segments removed.
    DropSegment(Index),
    /// One character of the name replaced by something that is not an ASCII letter or digit.
    NameChar(Index, char),
    /// One character of the subscription replaced so that it is no longer a GUID.
    SubscriptionChar(Index, char),
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        any::<Index>().prop_map(Breakage::ExtraSlash),
        any::<Index>().prop_map(Breakage::DropSegment),
        (
            any::<Index>(),
            hostile_char().prop_filter("not a letter or digit", |c| !c.is_ascii_alphanumeric())
        )
            .prop_map(|(at, c)| Breakage::NameChar(at, c)),
        (any::<Index>(), hostile_char()).prop_map(|(at, c)| Breakage::SubscriptionChar(at, c)),
    ]
}

/// The broken id, or `None` when the edit happens to keep the subscription a GUID.
fn break_id(subscription: &str, group: &str, name: &str, breakage: &Breakage) -> Option<String> {
    let text = registry_text(subscription, group, name);
    Some(match breakage {
        Breakage::ExtraSlash(at) => splice(&text, &[(*at, '/')]),
        Breakage::DropSegment(at) => {
            let mut segments: Vec<&str> = text[1..].split('/').collect();
            segments.remove(at.index(segments.len()));
            format!("/{}", segments.join("/"))
        }
        Breakage::NameChar(at, c) => {
            let mut chars: Vec<char> = name.chars().collect();
            let at = at.index(chars.len());
            chars[at] = *c;
            registry_text(subscription, group, &String::from_iter(chars))
        }
        Breakage::SubscriptionChar(at, c) => {
            let mut chars: Vec<char> = subscription.chars().collect();
            let at = at.index(chars.len());
            let still_guid = if chars[at] == '-' {
                *c == '-'
            } else {
                c.is_ascii_hexdigit()
            };
            if still_guid {
                return None;
            }
            chars[at] = *c;
            registry_text(&String::from_iter(chars), group, name)
        }
    })
}

/// ASCII strings of the registry-id shape that sit on both sides of every rule: group lengths
/// around 90 and a trailing '.', names around 5 and 50 and with separators, fixed segments in
/// any case or misspelt, subscriptions in other GUID forms.
fn ascii_id_candidates() -> impl Strategy<Value = String> {
    let fixed = |word: &'static str, wrong: &'static str| {
        (
            prop_oneof![9 => Just(word), 1 => Just(wrong)],
            vec(any::<bool>(), 1..16),
        )
            .prop_map(|(word, flips)| flip_case(word, &flips))
    };
    let subscription = prop_oneof![
        12 => guid().boxed(),
        1 => "[0-9a-fA-F]{32}".boxed(),
        1 => "\\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\}".boxed(),
        1 => "[0-9a-gA-G-]{35,37}".boxed(),
    ];
    let group = prop_oneof![
        6 => ascii_group().boxed(),
        1 => "[-a-zA-Z0-9_.()]{85,95}".boxed(),
        1 => "[-a-zA-Z0-9_.() ,]{0,6}".boxed(),
    ];
    let name = prop_oneof![
        6 => registry_name().boxed(),
        1 => "[a-zA-Z0-9]{3,6}".boxed(),
        1 => "[a-zA-Z0-9]{49,52}".boxed(),
        1 => "[-a-zA-Z0-9_.]{4,8}".boxed(),
    ];
    let soup = (
        fixed("subscriptions", "subscription"),
        subscription,
        fixed("resourceGroups", "resourceGroup"),
        group,
        fixed("providers", "provider"),
        fixed("Microsoft.ContainerRegistry", "Microsoft.ContainerService"),
        fixed("registries", "managedClusters"),
        name,
    )
        .prop_map(|(a, b, c, d, e, f, g, h)| format!("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}"));
    let broken = (ascii_parts(), breakage())
        .prop_filter_map("edit kept the id valid", |((s, g, n), b)| {
            break_id(&s, &g, &n, &b)
        })
        .prop_filter("ASCII only", |text| text.is_ascii());
    prop_oneof![4 => soup, 1 => broken]
}

// ---------------------------------------------------------------------------------------------
// 1. Resource ids.

proptest! {
    #![proptest_config(config())]

    /// No text makes an id parser panic; what parses keeps the text as written, and a refusal
    /// always says something.
    #[test]
    fn id_parsers_never_panic(text in arbitrary_text()) {
        for outcome in [
            RegistryId::parse(&text).map(|id| id.as_str().to_string()),
            IdentityId::parse(&text).map(|id| id.as_str().to_string()),
            ClusterId::parse(&text).map(|id| id.as_str().to_string()),
        ] {
            match outcome {
                Ok(kept) => prop_assert_eq!(&kept, &text),
                Err(problem) => prop_assert!(!problem.0.trim().is_empty()),
            }
        }
        match PrincipalId::parse(&text) {
            Ok(principal) => prop_assert_eq!(principal.as_str(), text.to_ascii_lowercase()),
            Err(problem) => prop_assert!(!problem.0.trim().is_empty()),
        }
    }

    /// Every non-nil GUID is an object id, normalised to lower case, and parses back to itself.
    #[test]
    fn object_ids_are_normalised_guids(text in guid()) {
        prop_assume!(text.chars().any(|c| c != '0' && c != '-'));
        let principal = PrincipalId::parse(&text).unwrap();
        prop_assert_eq!(principal.as_str(), text.to_ascii_lowercase());
        prop_assert_eq!(PrincipalId::parse(principal.as_str()).unwrap(), principal);
    }

    /// A registry id built from valid parts parses, and gives those parts back.
    #[test]
    fn registry_ids_round_trip_through_their_parts((subscription, group, name) in parts()) {
        let id = RegistryId::from_parts(&subscription, &group, &name).unwrap();
        prop_assert_eq!(id.subscription(), subscription.as_str());
        prop_assert_eq!(id.resource_group(), group.as_str());
        prop_assert_eq!(id.name(), name.as_str());
        prop_assert_eq!(id.as_str(), registry_text(&subscription, &group, &name));
        let again = RegistryId::parse(id.as_str()).unwrap();
        prop_assert_eq!(again.as_str(), id.as_str());
        prop_assert_eq!(again, id);
    }

    /// ARM compares ids case-insensitively, and so do equality, `key()`, hashing and the derived
    /// assignment name: a case-changed id (fixed segments included) is the same registry.
    #[test]
    fn registry_ids_compare_case_insensitively(
        (subscription, group, name) in parts(),
        flips in vec(any::<bool>(), 1..64),
    ) {
        let id = RegistryId::from_parts(&subscription, &group, &name).unwrap();
        let text = flip_case(id.as_str(), &flips);
        let other = RegistryId::parse(&text).unwrap();
        prop_assert_eq!(&other, &id);
        prop_assert_eq!(other.key(), id.key());
        let hash = |id: &RegistryId| {
            let mut hasher = DefaultHasher::new();
            id.hash(&mut hasher);
            hasher.finish()
        };
        prop_assert_eq!(hash(&other), hash(&id));
        let principal = PrincipalId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        let owner = OwnerId::new("cluster-a");
        prop_assert_eq!(
            RoleAssignmentName::derive(&other, &principal, PullRole::AcrPull, &owner),
            RoleAssignmentName::derive(&id, &principal, PullRole::AcrPull, &owner)
        );
    }

    /// Any edit that breaks the shape (a '/' too many, a segment missing, a name character that
    /// is not a letter or digit, a subscription that is no GUID) is refused, by the parser and,
    /// for ASCII text, by the CRD pattern.
    #[test]
    fn shape_breaking_edits_are_refused(
        (subscription, group, name) in parts(),
        breakage in breakage(),
    ) {
        let broken = break_id(&subscription, &group, &name, &breakage);
        prop_assume!(broken.is_some());
        let broken = broken.unwrap();
        prop_assert!(RegistryId::parse(&broken).is_err(), "{:?} was accepted", broken);
        if broken.is_ascii() {
            prop_assert!(!REGISTRY_PATTERN.is_match(&broken), "the CRD admits {:?}", broken);
        }
    }

    /// On ASCII text the CRD pattern and the parser agree both ways: admission refuses exactly
    /// the ids the operator would refuse.
    #[test]
    fn crd_pattern_and_parser_agree_on_ascii_ids(text in ascii_id_candidates()) {
        prop_assert_eq!(
            RegistryId::parse(&text).is_ok(),
            REGISTRY_PATTERN.is_match(&text),
            "parser and CRD pattern disagree on {:?}",
            text
        );
    }

    /// Every id the parser accepts is admitted by the CRD pattern, so admission never refuses
    /// an id the operator could use.
    #[test]
    fn every_id_the_parser_accepts_matches_the_crd_pattern((subscription, group, name) in parts()) {
        let text = registry_text(&subscription, &group, &name);
        prop_assert!(RegistryId::parse(&text).is_ok());
        prop_assert!(REGISTRY_PATTERN.is_match(&text), "the CRD refuses {:?}", text);
    }

    /// Resource groups with Unicode letters: the parser and the CRD pattern decide alike.
    #[test]
    fn parser_and_crd_pattern_agree_on_unicode_resource_groups(group in unicode_group()) {
        let text = registry_text("00000000-0000-4000-8000-000000000001", &group, "abcde");
        prop_assert_eq!(
            RegistryId::parse(&text).is_ok(),
            REGISTRY_PATTERN.is_match(&text),
            "parser and CRD pattern disagree on {:?}",
            text
        );
    }
}

/// The minimal input property tests found when the two disagreed: a one-letter non-ASCII group,
/// which the CRD refused and the operator accepted. Now both refuse it.
#[test]
fn a_unicode_resource_group_is_refused_by_the_crd_and_the_operator_alike() {
    let text = registry_text("00000000-0000-4000-8000-000000000001", "é", "abcde");
    assert!(RegistryId::parse(&text).is_err());
    assert!(!REGISTRY_PATTERN.is_match(&text));
}

// ---------------------------------------------------------------------------------------------
// 2. Spec validation.

/// Text for a spec field: mostly valid for it (so validation goes past the first check), else
/// anything.
fn text_for(valid: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => valid,
        1 => arbitrary_text().prop_filter("short", |text| text.len() < 500),
        1 => Just(String::new()),
        1 => Just(" padded ".to_string()),
    ]
}

/// A field that is usually set (`weight` of the time).
fn set_often(weight: f64, valid: BoxedStrategy<String>) -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(weight, text_for(valid))
}

fn identity_text() -> BoxedStrategy<String> {
    (guid(), ascii_group(), "[a-zA-Z0-9_-]{3,20}")
        .prop_map(|(s, g, n)| {
            format!(
                "/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}"
            )
        })
        .boxed()
}

/// By resource id, by name (with or without group and subscription), or any mix of the four.
fn registry_reference() -> impl Strategy<Value = RegistryReference> {
    let id = || {
        parts()
            .prop_map(|(s, g, n)| registry_text(&s, &g, &n))
            .boxed()
    };
    let by_id = text_for(id()).prop_map(RegistryReference::by_id);
    let by_name = (
        text_for(registry_name().boxed()),
        set_often(0.4, ascii_group().boxed()),
        set_often(0.4, guid().boxed()),
    )
        .prop_map(
            |(name, resource_group, subscription_id)| RegistryReference {
                resource_group,
                subscription_id,
                ..RegistryReference::by_name(name)
            },
        );
    let mixed = (
        set_often(0.5, id()),
        set_often(0.5, registry_name().boxed()),
        set_often(0.5, ascii_group().boxed()),
        set_often(0.5, guid().boxed()),
    )
        .prop_map(
            |(resource_id, name, resource_group, subscription_id)| RegistryReference {
                resource_id,
                name,
                resource_group,
                subscription_id,
            },
        );
    prop_oneof![3 => by_id, 3 => by_name, 1 => mixed]
}

/// Usually one of objectId, identityResourceId or kubelet, sometimes several or none.
fn principal_spec() -> impl Strategy<Value = PrincipalSpec> {
    let kind = prop::sample::select(vec![
        PrincipalKind::ServicePrincipal,
        PrincipalKind::ServicePrincipal,
        PrincipalKind::Group,
        PrincipalKind::User,
        PrincipalKind::Unrecognized,
    ]);
    (
        0..4u8,
        prop::option::weighted(0.1, text_for(guid().boxed())),
        prop::option::weighted(0.1, text_for(identity_text())),
        prop::option::weighted(0.1, any::<bool>()),
        text_for(guid().boxed()),
        text_for(identity_text()),
        kind,
    )
        .prop_map(
            |(which, extra_object, extra_identity, extra_kubelet, object, identity, type_)| {
                let mut spec = PrincipalSpec {
                    object_id: extra_object,
                    identity_resource_id: extra_identity,
                    kubelet: extra_kubelet,
                    type_,
                };
                match which {
                    0 => spec.object_id = Some(object),
                    1 => spec.identity_resource_id = Some(identity),
                    2 => spec.kubelet = Some(true),
                    _ => {}
                }
                spec
            },
        )
}

fn any_spec() -> impl Strategy<Value = RegistryAttachmentSpec> {
    (
        registry_reference(),
        prop_oneof![
            3 => Just(RoleChoice::Auto),
            2 => Just(RoleChoice::AcrPull),
            2 => Just(RoleChoice::RepositoryReader),
            1 => Just(RoleChoice::Unrecognized),
        ],
        prop::option::weighted(
            0.2,
            text_for(guid().boxed()).prop_map(|object_id| PrincipalReference { object_id }),
        ),
        vec(principal_spec(), 0..4),
        prop_oneof![
            1 => Just(Vec::new()),
            1 => vec(
                prop_oneof![
                    12 => repository_entry(),
                    1 => arbitrary_text().prop_filter("short", |text| text.len() < 300),
                ],
                1..5,
            ),
        ],
        any::<bool>(),
        prop_oneof![
            4 => Just(DeletionPolicy::Delete),
            2 => Just(DeletionPolicy::Orphan),
            1 => Just(DeletionPolicy::Unrecognized),
        ],
    )
        .prop_map(
            |(
                registry,
                role,
                principal,
                principals,
                repositories,
                catalog_listing,
                deletion_policy,
            )| {
                RegistryAttachmentSpec {
                    registry,
                    role,
                    principal,
                    principals,
                    repositories,
                    catalog_listing,
                    deletion_policy,
                }
            },
        )
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the spec holds, `validate` answers: a refusal lists at least one error, each
    /// naming a `spec.` field with a message; an acceptance has principals, none twice, and the
    /// repositories sorted without duplicates.
    #[test]
    fn validate_names_a_spec_field_for_every_error(spec in any_spec()) {
        match validate(&spec) {
            Err(errors) => {
                prop_assert!(!errors.is_empty(), "refused without a reason");
                for error in &errors {
                    prop_assert!(error.field.starts_with("spec."), "{:?}", error);
                    prop_assert!(!error.message.trim().is_empty(), "{:?}", error);
                }
            }
            Ok(desired) => {
                prop_assert!(!desired.principals.is_empty());
                for (index, principal) in desired.principals.iter().enumerate() {
                    prop_assert!(!desired.principals[..index].contains(principal));
                }
                prop_assert!(desired.repositories.windows(2).all(|pair| pair[0] < pair[1]));
                prop_assert!(desired.repositories.len() <= spec.repositories.len());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Repository patterns and ABAC conditions.

/// One path component of the OCI repository grammar: lower-case runs joined by '.', '_', '__'
/// or dashes.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,3}((\\.|_|__|-{1,3})[a-z0-9]{1,3}){0,2}"
}

fn repository_name() -> impl Strategy<Value = String> {
    vec(component(), 1..4).prop_map(|components| components.join("/"))
}

/// An exact name or a `prefix/*`, as spec.repositories takes them.
fn repository_entry() -> impl Strategy<Value = String> {
    (repository_name(), any::<bool>()).prop_map(
        |(name, prefix)| {
            if prefix { format!("{name}/*") } else { name }
        },
    )
}

fn spec_with_repositories(repositories: Vec<String>) -> RegistryAttachmentSpec {
    RegistryAttachmentSpec {
        registry: RegistryReference::by_id(registry_text(
            "00000000-0000-4000-8000-000000000001",
            "images",
            "abacimages",
        )),
        role: RoleChoice::Auto,
        principal: None,
        principals: Vec::new(),
        repositories,
        catalog_listing: false,
        deletion_policy: DeletionPolicy::Delete,
    }
}

/// The patterns as validate keeps them: sorted, without duplicates.
fn validated_patterns(entries: &[String]) -> Vec<RepositoryPattern> {
    validate(&spec_with_repositories(entries.to_vec()))
        .unwrap()
        .repositories
}

/// Byte offsets outside the quoted literals of a condition: where ARM may add or drop blanks.
fn offsets_outside_quotes(condition: &str) -> Vec<usize> {
    let mut quotes = 0;
    let mut offsets = Vec::new();
    for (offset, c) in condition.char_indices() {
        if quotes % 2 == 0 {
            offsets.push(offset);
        }
        if c == '\'' {
            quotes += 1;
        }
    }
    offsets.push(condition.len());
    offsets
}

/// `condition` reformatted: its blanks outside quotes dropped (when `squeeze`), then blanks
/// (spaces, tabs, newlines) inserted at the chosen places outside quotes.
fn reformat(condition: &str, squeeze: bool, insertions: &[(Index, String)]) -> String {
    let mut text = String::new();
    let mut quotes = 0;
    for c in condition.chars() {
        if c == '\'' {
            quotes += 1;
        }
        if !(squeeze && quotes % 2 == 0 && c == ' ') {
            text.push(c);
        }
    }
    for (at, blanks) in insertions {
        let offsets = offsets_outside_quotes(&text);
        let offset = offsets[at.index(offsets.len())];
        text.insert_str(offset, blanks);
    }
    text
}

/// Entries, and the same entries with some repeated, in another order.
fn entries_and_shuffled() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    (vec(repository_entry(), 1..6), vec(any::<Index>(), 0..4)).prop_flat_map(
        |(entries, repeats)| {
            let mut all = entries.clone();
            all.extend(repeats.iter().map(|at| at.get(&entries).clone()));
            (Just(entries), Just(all).prop_shuffle())
        },
    )
}

/// Any text, and valid entries with a character spliced in that would end the quoted literal
/// or hide in it (quote, backslash, blanks).
fn pattern_candidates() -> impl Strategy<Value = (String, bool)> {
    let breaking = prop::sample::select(vec![
        '\'', '"', '\\', ' ', '\t', '\n', '\r', '\u{a0}', '\u{2028}', '\u{3000}', '\u{b}',
    ]);
    prop_oneof![
        2 => arbitrary_text().prop_map(|text| (text, false)),
        2 => (repository_entry(), vec((any::<Index>(), breaking), 1..3))
            .prop_map(|(entry, insertions)| (splice(&entry, &insertions), true)),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// The generator's names are the grammar parse_pattern accepts, and an entry reads back as
    /// written.
    #[test]
    fn valid_entries_are_accepted_as_written(entry in repository_entry()) {
        let pattern = parse_pattern(&entry).unwrap();
        prop_assert_eq!(pattern.to_string(), entry.clone());
        prop_assert_eq!(
            matches!(pattern, RepositoryPattern::Prefix(_)),
            entry.ends_with("/*")
        );
    }

    /// The condition depends on the set of entries only: not on their order, not on
    /// repetitions, and not on the call.
    #[test]
    fn the_condition_depends_only_on_the_set_of_entries(
        (entries, shuffled) in entries_and_shuffled(),
    ) {
        let patterns = validated_patterns(&entries);
        let reordered = validated_patterns(&shuffled);
        prop_assert_eq!(&reordered, &patterns);
        let mut by_hand: Vec<RepositoryPattern> =
            entries.iter().map(|entry| parse_pattern(entry).unwrap()).collect();
        by_hand.sort();
        by_hand.dedup();
        prop_assert_eq!(&by_hand, &patterns);
        let rendered = render_condition(&patterns);
        prop_assert_eq!(render_condition(&reordered), rendered.clone());
        prop_assert_eq!(render_condition(&patterns), rendered);
    }

    /// ARM may store the condition with other blanks around its tokens: still the same
    /// condition, so the grant is not rewritten on every reconcile.
    #[test]
    fn conditions_compare_without_blanks(
        entries in vec(repository_entry(), 1..5),
        squeeze in any::<bool>(),
        insertions in vec((any::<Index>(), "[ \t\r\n]{1,3}"), 0..12),
    ) {
        let rendered = render_condition(&validated_patterns(&entries));
        let stored = reformat(&rendered, squeeze, &insertions);
        prop_assert!(Condition::new(rendered.clone()).matches(Some(&stored)), "{:?} vs {:?}", rendered, stored);
        prop_assert_eq!(Condition::new(rendered), Condition::new(stored));
    }

    /// A different repository name is a different condition, even reformatted: an edit of
    /// spec.repositories is never mistaken for the grant in place.
    #[test]
    fn a_changed_repository_name_is_a_different_condition(
        entries in vec(repository_entry(), 1..5),
        which in any::<Index>(),
        at in any::<Index>(),
        replacement in "[a-z0-9]",
        insertions in vec((any::<Index>(), "[ \t\n]{1,2}"), 0..6),
    ) {
        let mut changed = entries.clone();
        let entry = which.get_mut(&mut changed);
        let letters: Vec<usize> = entry
            .char_indices()
            .filter(|(_, c)| c.is_ascii_alphanumeric())
            .map(|(offset, _)| offset)
            .collect();
        let offset = letters[at.index(letters.len())];
        prop_assume!(entry[offset..].chars().next() != replacement.chars().next());
        entry.replace_range(offset..offset + 1, &replacement);
        let before = validated_patterns(&entries);
        let after = validated_patterns(&changed);
        prop_assume!(before != after);
        let stored = reformat(&render_condition(&before), false, &insertions);
        prop_assert!(!Condition::new(render_condition(&after)).matches(Some(&stored)));
    }

    /// parse_pattern never panics, and nothing it accepts could end or escape the quoted
    /// literal of the condition: accepted entries hold only the grammar's characters.
    #[test]
    fn accepted_entries_cannot_break_out_of_the_condition((entry, spliced) in pattern_candidates()) {
        match parse_pattern(&entry) {
            Ok(pattern) => {
                prop_assert!(!spliced, "{:?} was accepted", entry);
                prop_assert!(
                    !entry.chars().any(|c| c == '\'' || c == '"' || c == '\\' || c.is_whitespace()),
                    "{:?} was accepted", entry
                );
                prop_assert!(
                    entry.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*".contains(c)),
                    "{:?} was accepted", entry
                );
                let quoted = format!("'{}'", entry.trim_end_matches('*'));
                prop_assert!(render_condition(&[pattern]).contains(&quoted));
            }
            Err(message) => prop_assert!(!message.trim().is_empty()),
        }
    }
}

/// `team-a/*` grants `team-a/...` and never `team-ab/...`; an exact name grants that repository
/// only. Judged by the ARM emulator's ABAC evaluator on a Repository Reader assignment carrying
/// the rendered condition, and on the rendered text.
#[test]
fn a_prefix_never_grants_a_sibling_repository() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = registry_text(
        arm_emulator::DEFAULT_SUBSCRIPTION_ID,
        "images",
        "abacimages",
    );
    let emulator = runtime
        .block_on(arm_emulator::ArmEmulator::start(
            arm_emulator::TenantConfig {
                registries: vec![arm_emulator::RegistryConfig::new(
                    registry.clone(),
                    arm_emulator::RegistryMode::Abac,
                )],
                ..arm_emulator::TenantConfig::default()
            },
        ))
        .unwrap();
    let principal = "6b1e0000-0000-4000-8000-0000000000b1";
    let sibling_char = prop_oneof![
        "[a-z0-9]".boxed(),
        prop::sample::select(vec!["-", ".", "_", "__"])
            .prop_map(str::to_string)
            .boxed()
    ];
    proptest!(config(), |(
        prefix in repository_name(),
        sibling in sibling_char,
        below in repository_name(),
    )| {
        let condition = render_condition(&[parse_pattern(&format!("{prefix}/*")).unwrap()]);
        prop_assert!(condition.contains(&format!("'{prefix}/'")), "{}", condition);
        emulator.insert_role_assignment_with(arm_emulator::RoleAssignmentConfig {
            scope: registry.clone(),
            name: "0f0f0f0f-0000-4000-8000-000000000001".to_string(),
            role_definition: arm_emulator::REPOSITORY_READER.to_string(),
            principal_id: principal.to_string(),
            principal_type: Some("ServicePrincipal".to_string()),
            description: None,
            condition: Some(condition),
        });
        let may_read = |repository: &str| emulator.may_read_repository(&registry, principal, repository);
        let inside = format!("{prefix}/{below}");
        let sibling_name = format!("{prefix}{sibling}");
        prop_assert!(may_read(&inside), "{}/* refuses {}", prefix, inside);
        let sibling_repository = format!("{prefix}{sibling}/{below}");
        prop_assert!(!may_read(&sibling_repository), "{}/* grants {}", prefix, sibling_repository);
        prop_assert!(!may_read(&sibling_name), "{}/* grants {}", prefix, sibling_name);
        prop_assert!(!may_read(&prefix), "{}/* grants {} itself", prefix, prefix);

        emulator.insert_role_assignment_with(arm_emulator::RoleAssignmentConfig {
            scope: registry.clone(),
            name: "0f0f0f0f-0000-4000-8000-000000000001".to_string(),
            role_definition: arm_emulator::REPOSITORY_READER.to_string(),
            principal_id: principal.to_string(),
            principal_type: Some("ServicePrincipal".to_string()),
            description: None,
            condition: Some(render_condition(&[parse_pattern(&prefix).unwrap()])),
        });
        prop_assert!(may_read(&prefix), "{} refuses itself", prefix);
        prop_assert!(!may_read(&inside), "{} grants {}", prefix, inside);
        prop_assert!(!may_read(&sibling_name), "{} grants {}", prefix, sibling_name);
    });
    drop(emulator);
}

// ---------------------------------------------------------------------------------------------
// 4. Planner invariants.

const OWNER: &str = "cluster-a";
const OTHER_OWNER: &str = "cluster-b";
const ATTACHMENT: &str = "a";
const SIBLING: &str = "b";

/// (subscription, resource group, name): two registries share a subscription, one group name
/// is a prefix of another's.
const REGISTRIES: [(&str, &str, &str); 3] = [
    (
        "00000000-0000-4000-8000-000000000001",
        "Images-RG",
        "SharedImages",
    ),
    (
        "00000000-0000-4000-8000-000000000001",
        "Images",
        "TeamAcr01",
    ),
    (
        "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D",
        "other.rg(1)",
        "otheracr",
    ),
];
const PRINCIPALS: [&str; 3] = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
];
const ROLES: [PullRole; 3] = [
    PullRole::AcrPull,
    PullRole::RepositoryReader,
    PullRole::CatalogLister,
];
/// Names of assignments made by hand (or by anything but acr-attach).
const FOREIGN_NAMES: [&str; 3] = [
    "aaaaaaaa-0000-4000-8000-000000000001",
    "aaaaaaaa-0000-4000-8000-000000000002",
    "aaaaaaaa-0000-4000-8000-000000000003",
];

fn conditions() -> [String; 2] {
    let render = |entries: &[&str]| {
        let mut patterns: Vec<RepositoryPattern> =
            entries.iter().map(|e| parse_pattern(e).unwrap()).collect();
        patterns.sort();
        render_condition(&patterns)
    };
    [render(&["team-a/*"]), render(&["nginx", "team-b/*"])]
}

/// Registry `index` spelt as written (0), all lower case (1) or with `resourcegroups` and the
/// group in other cases (2): ARM and users spell one id several ways.
fn spelling(index: usize, variant: u8) -> String {
    let (subscription, group, name) = REGISTRIES[index];
    let text = registry_text(subscription, group, name);
    match variant {
        0 => text,
        1 => text.to_ascii_lowercase(),
        _ => registry_text(
            &subscription.to_ascii_lowercase(),
            &group.to_ascii_uppercase(),
            name,
        )
        .replace("resourceGroups", "resourcegroups"),
    }
}

/// One registry, principal and role, by index into the pools above.
#[derive(Clone, Copy, Debug)]
struct GrantPick {
    registry: usize,
    principal: usize,
    role: PullRole,
    /// Index into `conditions()`; Repository Reader only.
    condition: Option<usize>,
}

impl GrantPick {
    /// The grant, its registry id spelt `spelling`, under `condition` instead of its own when
    /// that is given (Repository Reader only).
    fn grant(&self, spelling_variant: u8, condition: Option<Option<usize>>) -> Grant {
        let condition = match condition {
            Some(other) if self.role == PullRole::RepositoryReader => other,
            _ => self.condition,
        };
        Grant {
            registry: RegistryId::parse(&spelling(self.registry, spelling_variant)).unwrap(),
            principal: PrincipalId::parse(PRINCIPALS[self.principal]).unwrap(),
            principal_type: PrincipalType::ServicePrincipal,
            role: self.role,
            condition: condition.map(|index| Condition::new(conditions()[index].clone())),
        }
    }
}

fn grant_pick() -> impl Strategy<Value = GrantPick> {
    (
        0..REGISTRIES.len(),
        0..PRINCIPALS.len(),
        prop::sample::select(ROLES.to_vec()),
        prop::option::of(0..2usize),
    )
        .prop_map(|(registry, principal, role, condition)| GrantPick {
            registry,
            principal,
            role,
            condition: condition.filter(|_| role == PullRole::RepositoryReader),
        })
}

/// Who made an existing assignment.
#[derive(Clone, Copy, Debug)]
enum Maker {
    /// This installation, under its derived name (per attachment when scoped).
    Us,
    /// This installation for the sibling attachment `b` (differs from `Us` when scoped).
    Sibling,
    /// Another acr-attach installation, under its derived name.
    OtherInstallation,
    /// Someone else, by hand.
    Hand,
    /// Someone else, with a description copied from acr-attach's.
    Forger,
}

/// One of the case's grants as an assignment ARM lists.
#[derive(Clone, Debug)]
struct ExistingPick {
    maker: Maker,
    /// The description also lists the other party (another installation, or us).
    co_owned: bool,
    foreign: usize,
    /// The scope as ARM often returns it: lower case.
    scope_lower_case: bool,
    /// A condition other than the grant's (an edit of spec.repositories since).
    condition: Option<Option<usize>>,
}

/// One of the case's grants as a record in status.
#[derive(Clone, Debug)]
struct RecordPick {
    spelling: u8,
    /// 0: as record_of writes it; 1: unscoped; 2: co-owned (shared name); 3: unparseable.
    kind: u8,
    /// Shared name: 0 the other installation's derived name, 1.. a foreign one.
    shared: usize,
}

/// A few grants, and the wanted grants, assignments, records and claims drawn from them, so
/// that they meet often.
#[derive(Clone, Debug)]
struct PlanCase {
    grants: Vec<GrantPick>,
    wanted: Vec<(Index, u8)>,
    existing: Vec<(Index, ExistingPick)>,
    records: Vec<(Index, RecordPick)>,
    listed_extra: [bool; 3],
    claimed_grant: Option<(Index, u8)>,
    claimed_id: Option<Index>,
}

/// Plan inputs; `spellings` = how many spellings of a registry id records and wanted grants
/// use (1: always the same text).
fn plan_case(spellings: u8) -> impl Strategy<Value = PlanCase> {
    let existing = (
        prop_oneof![
            4 => Just(Maker::Us),
            1 => Just(Maker::Sibling),
            3 => Just(Maker::OtherInstallation),
            1 => Just(Maker::Hand),
            1 => Just(Maker::Forger),
        ],
        any::<bool>(),
        0..FOREIGN_NAMES.len(),
        any::<bool>(),
        prop::option::weighted(0.2, prop::option::of(0..2usize)),
    )
        .prop_map(
            |(maker, co_owned, foreign, scope_lower_case, condition)| ExistingPick {
                maker,
                co_owned,
                foreign,
                scope_lower_case,
                condition,
            },
        );
    let kind = prop_oneof![4 => Just(0u8), 1 => Just(1), 3 => Just(2), 1 => Just(3)];
    let shared = prop_oneof![3 => Just(0), 1 => 1..=FOREIGN_NAMES.len()];
    let record = (0..spellings, kind, shared).prop_map(|(spelling, kind, shared)| RecordPick {
        spelling,
        kind,
        shared,
    });
    let used = || (any::<Index>(), 0..spellings);
    (
        vec(grant_pick(), 1..5),
        vec(used(), 0..3),
        vec((any::<Index>(), existing), 0..6),
        vec((any::<Index>(), record), 1..5),
        [
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
        ],
        prop::option::weighted(0.25, used()),
        prop::option::weighted(0.25, any::<Index>()),
    )
        .prop_map(
            |(grants, wanted, existing, records, listed_extra, claimed_grant, claimed_id)| {
                PlanCase {
                    grants,
                    wanted,
                    existing,
                    records,
                    listed_extra,
                    claimed_grant,
                    claimed_id,
                }
            },
        )
}

/// The plan's inputs, built as the controller would see them.
struct Built {
    owner: OwnerId,
    wanted: Vec<Grant>,
    existing: Vec<RoleAssignment>,
    listed: HashSet<String>,
    owned: Vec<OwnedAssignment>,
    claims: Claims,
}

impl Built {
    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            attachment: ATTACHMENT,
            owner: &self.owner,
            wanted: &self.wanted,
            existing: &self.existing,
            listed: &self.listed,
            owned: &self.owned,
            claims: &self.claims,
        }
    }
}

fn assignment(grant: &Grant, pick: &ExistingPick, owner: &OwnerId) -> RoleAssignment {
    let other = OwnerId::new(OTHER_OWNER);
    let (name, description) = match pick.maker {
        Maker::Us | Maker::Sibling => {
            let attachment = match pick.maker {
                Maker::Us => ATTACHMENT,
                _ => SIBLING,
            };
            let mut owners = Owners::created_by(owner);
            if pick.co_owned {
                owners = owners.with(&other);
            }
            (
                grant.name(owner, attachment),
                Some(ownership::describe(&owners, attachment)),
            )
        }
        Maker::OtherInstallation => {
            let mut owners = Owners::created_by(&other);
            if pick.co_owned {
                owners = owners.with(owner);
            }
            (
                grant.name(&other, "elsewhere"),
                Some(ownership::describe(&owners, "elsewhere")),
            )
        }
        Maker::Hand => (
            RoleAssignmentName::from_arm(FOREIGN_NAMES[pick.foreign]),
            pick.co_owned.then(|| "made by hand".to_string()),
        ),
        Maker::Forger => {
            let mut owners = Owners::created_by(owner);
            if pick.co_owned {
                owners = owners.with(&other);
            }
            (
                RoleAssignmentName::from_arm(FOREIGN_NAMES[pick.foreign]),
                Some(ownership::describe(&owners, ATTACHMENT)),
            )
        }
    };
    let scope = if pick.scope_lower_case {
        grant.registry.as_str().to_ascii_lowercase()
    } else {
        grant.registry.as_str().to_string()
    };
    RoleAssignment {
        id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        name,
        scope,
        role_definition_id: grant.role.definition_id(grant.registry.subscription()),
        principal_id: grant.principal.to_string(),
        condition: grant.condition.as_ref().map(|c| c.as_str().to_string()),
        description,
        principal_type: Some("ServicePrincipal".to_string()),
    }
}

fn record(grant: &Grant, pick: &RecordPick) -> OwnedAssignment {
    let unscoped = Grant {
        condition: None,
        ..grant.clone()
    };
    match pick.kind {
        0 => record_of(grant, ATTACHMENT),
        1 => record_of(&unscoped, ATTACHMENT),
        2 => {
            let shared = match pick.shared {
                0 => unscoped
                    .name(&OwnerId::new(OTHER_OWNER), ATTACHMENT)
                    .as_str()
                    .to_string(),
                n => FOREIGN_NAMES[n - 1].to_string(),
            };
            OwnedAssignment {
                shared_name: Some(shared),
                ..record_of(&unscoped, ATTACHMENT)
            }
        }
        _ => OwnedAssignment {
            registry_id: "/subscriptions/x".to_string(),
            ..record_of(grant, ATTACHMENT)
        },
    }
}

/// A role assignment's identity as ARM enforces it: one per scope, principal, role, condition.
fn arm_identity(assignment: &RoleAssignment) -> (String, String, String, String) {
    (
        assignment.scope.to_ascii_lowercase(),
        assignment.principal_id.to_ascii_lowercase(),
        assignment.role_definition_id.to_ascii_lowercase(),
        assignment
            .condition
            .as_deref()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    )
}

fn build(case: &PlanCase) -> Built {
    let owner = OwnerId::new(OWNER);
    let pick = |at: &Index| *at.get(&case.grants);
    // One grant per registry, principal and role: an attachment has one condition.
    let mut wanted: Vec<Grant> = Vec::new();
    for (at, spelling) in &case.wanted {
        let grant = pick(at).grant(*spelling, None);
        if !wanted.iter().any(|w| {
            w.registry == grant.registry && w.principal == grant.principal && w.role == grant.role
        }) {
            wanted.push(grant);
        }
    }
    // ARM holds one assignment per name and one per (scope, principal, role, condition).
    let mut existing: Vec<RoleAssignment> = Vec::new();
    for (at, existing_pick) in &case.existing {
        let grant = pick(at).grant(0, existing_pick.condition);
        let candidate = assignment(&grant, existing_pick, &owner);
        if !existing
            .iter()
            .any(|a| a.name == candidate.name || arm_identity(a) == arm_identity(&candidate))
        {
            existing.push(candidate);
        }
    }
    let mut owned: Vec<OwnedAssignment> = Vec::new();
    for (at, record_pick) in &case.records {
        let grant = pick(at).grant(record_pick.spelling, None);
        let candidate = record(&grant, record_pick);
        if !owned.contains(&candidate) {
            owned.push(candidate);
        }
    }
    let mut listed: HashSet<String> = wanted.iter().map(|g| g.registry.key()).collect();
    for (index, extra) in case.listed_extra.iter().enumerate() {
        if *extra {
            listed.insert(RegistryId::parse(&spelling(index, 0)).unwrap().key());
        }
    }
    let mut claims = Claims::default();
    if let Some((at, spelling)) = &case.claimed_grant {
        claims.add_grant(&pick(at).grant(*spelling, None));
    }
    if let Some(at) = &case.claimed_id
        && !existing.is_empty()
    {
        claims.add_assignment_id(&at.get(&existing).id);
    }
    Built {
        owner,
        wanted,
        existing,
        listed,
        owned,
        claims,
    }
}

/// The assignments a plan deletes or leaves, with the record each comes from.
fn touched<'a>(plan: &'a Plan, built: &'a Built) -> Vec<(&'a OwnedAssignment, &'a RoleAssignment)> {
    plan.releases
        .iter()
        .filter_map(|release| match release {
            Release::Delete {
                record,
                assignment_id,
            }
            | Release::Leave {
                record,
                assignment_id,
            } => Some((record, assignment_id)),
            Release::Forget { .. } => None,
        })
        .map(|(record, id)| {
            let assignment = built
                .existing
                .iter()
                .find(|a| a.id == *id)
                .unwrap_or_else(|| panic!("release of {id}, which ARM does not list"));
            (record, assignment)
        })
        .collect()
}

/// Invariant (a): the assignment is one acr-attach derived the name of for the record's
/// registry, principal and role: this installation (for the record's attachment when scoped),
/// or, for a co-owned record, an installation its description lists.
fn made_by_us_from(record: &OwnedAssignment, assignment: &RoleAssignment, owner: &OwnerId) -> bool {
    let registry = RegistryId::parse(&record.registry_id).unwrap();
    let principal = PrincipalId::parse(&record.principal_id).unwrap();
    let role = PullRole::from_short_name(&record.role).unwrap();
    let derive = |owner: &OwnerId| RoleAssignmentName::derive(&registry, &principal, role, owner);
    match (&record.shared_name, &record.scoped_to) {
        (None, None) => assignment.name == derive(owner),
        (None, Some(attachment)) => {
            assignment.name
                == RoleAssignmentName::derive_scoped(&registry, &principal, role, owner, attachment)
        }
        (Some(_), _) => ownership::parse(assignment.description.as_deref()).is_some_and(|owners| {
            owners
                .owners
                .iter()
                .chain(owners.creator.iter())
                .any(|listed| assignment.name == derive(&OwnerId::new(listed.as_str())))
        }),
    }
}

fn check_releases_are_ours(plan: &Plan, built: &Built) -> Result<(), TestCaseError> {
    for release in &plan.releases {
        let record = match release {
            Release::Delete { record, .. }
            | Release::Leave { record, .. }
            | Release::Forget { record } => record,
        };
        prop_assert!(
            built.owned.contains(record),
            "release of a record not in status: {:?}",
            release
        );
    }
    for (record, assignment) in touched(plan, built) {
        prop_assert!(
            !FOREIGN_NAMES.contains(&assignment.name.as_str()),
            "releases a hand-made assignment {:?} through {:?}",
            assignment,
            record
        );
        prop_assert!(
            made_by_us_from(record, assignment, &built.owner),
            "releases {:?}, which {:?} does not derive",
            assignment,
            record
        );
    }
    Ok(())
}

fn check_no_wanted_grant_is_released(plan: &Plan, built: &Built) -> Result<(), TestCaseError> {
    for (record, assignment) in touched(plan, built) {
        for grant in &built.wanted {
            prop_assert!(
                !grant.is_provided_by(assignment),
                "releases {:?} (record {:?}) although wanted {} rests on it; plan: {:?}",
                assignment,
                record,
                grant,
                plan
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// (a) Deletions and leaves only ever name an assignment acr-attach derived from one of
    /// this attachment's records, never one made by hand (whatever its description says);
    /// (c) the plan is a function of its inputs.
    #[test]
    fn the_planner_releases_only_what_it_provably_made(case in plan_case(3)) {
        let built = build(&case);
        let first = plan(&built.input());
        check_releases_are_ours(&first, &built)?;
        prop_assert_eq!(plan(&built.input()), first);
    }

    /// (b) No release removes an assignment a wanted grant rests on, with records written in
    /// the same spelling of the registry id as the wanted grants; and a PUT is always under
    /// the name this installation derives.
    #[test]
    fn the_planner_never_releases_a_wanted_grant(case in plan_case(1)) {
        let built = build(&case);
        let plan = plan(&built.input());
        check_no_wanted_grant_is_released(&plan, &built)?;
        for step in &plan.steps {
            if let Step::Put { name, .. } = &step.step {
                prop_assert_eq!(name, &step.grant.name(&built.owner, ATTACHMENT));
            }
        }
    }

    /// (b) as above, with records and wanted grants spelling one registry id differently (as
    /// after an edit of the id's case in the spec, or a registry list answering in another
    /// case).
    #[test]
    fn the_planner_never_releases_a_wanted_grant_whatever_the_spelling(case in plan_case(3)) {
        let built = build(&case);
        let plan = plan(&built.input());
        check_no_wanted_grant_is_released(&plan, &built)?;
    }
}

/// The minimal case the property above found (before records compared case-insensitively): AcrPull wanted on `.../resourceGroups/
/// Images-RG/.../registries/SharedImages`, our assignment for it listed, and the record written
/// when the spec spelt the id in lower case. The plan reports the grant Present and deletes the
/// same assignment; the next reconcile creates it again.
#[test]
fn the_spelling_of_a_recorded_registry_id_does_not_retire_its_grant() {
    let owner = OwnerId::new(OWNER);
    let pick = GrantPick {
        registry: 0,
        principal: 0,
        role: PullRole::AcrPull,
        condition: None,
    };
    let want = pick.grant(0, None);
    let ours = ExistingPick {
        maker: Maker::Us,
        co_owned: false,
        foreign: 0,
        scope_lower_case: false,
        condition: None,
    };
    let recorded = RecordPick {
        spelling: 1,
        kind: 0,
        shared: 0,
    };
    let built = Built {
        existing: vec![assignment(&want, &ours, &owner)],
        owned: vec![record(&pick.grant(1, None), &recorded)],
        listed: [want.registry.key()].into(),
        wanted: vec![want],
        claims: Claims::default(),
        owner,
    };
    let plan = plan(&built.input());
    assert!(
        matches!(plan.steps[0].step, Step::Present { .. }),
        "{plan:?}"
    );
    assert!(plan.releases.is_empty(), "{plan:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. Registry lookup by name.

const LOOKUP_SUBSCRIPTION: &str = "00000000-0000-4000-8000-000000000001";
const LOOKUP_NAMES: [&str; 3] = ["sharedimages", "sharedimage5", "teamacr01"];
const LOOKUP_GROUPS: [&str; 3] = ["images", "Images", "team-rg"];

fn listed_registry() -> impl Strategy<Value = Registry> {
    let id = (
        0..LOOKUP_GROUPS.len(),
        0..LOOKUP_NAMES.len(),
        vec(any::<bool>(), 1..16),
    )
        .prop_map(|(group, name, flips)| {
            flip_case(
                &registry_text(
                    LOOKUP_SUBSCRIPTION,
                    LOOKUP_GROUPS[group],
                    LOOKUP_NAMES[name],
                ),
                &flips,
            )
        });
    prop_oneof![
        6 => id,
        1 => arbitrary_text().prop_filter("short", |text| text.len() < 300),
        1 => Just(registry_text(LOOKUP_SUBSCRIPTION, "images", "shared-images")),
    ]
    .prop_map(|id| Registry {
        id,
        login_server: None,
        mode: None,
    })
}

proptest! {
    #![proptest_config(config())]

    /// A name resolves to a listed registry of that name (ignoring ASCII case), and does so
    /// exactly when the list holds one such registry (one id, however spelt); otherwise the
    /// failure says not found or ambiguous.
    #[test]
    fn a_lookup_resolves_only_to_the_one_registry_of_its_name(
        name in (0..LOOKUP_NAMES.len(), vec(any::<bool>(), 1..8))
            .prop_map(|(name, flips)| flip_case(LOOKUP_NAMES[name], &flips)),
        listed in vec(listed_registry(), 0..6),
    ) {
        let lookup = RegistryLookup {
            name: name.clone(),
            resource_group: None,
            subscription: None,
        };
        let scope = list_scope(&lookup, Some(LOOKUP_SUBSCRIPTION)).unwrap();
        let mut matching: Vec<String> = listed
            .iter()
            .filter_map(|registry| RegistryId::parse(&registry.id).ok())
            .filter(|id| id.name().eq_ignore_ascii_case(&name))
            .map(|id| id.key())
            .collect();
        matching.sort();
        matching.dedup();
        match resolve(&lookup, &scope, &listed) {
            Ok(id) => {
                prop_assert!(id.name().eq_ignore_ascii_case(&name), "{} for {}", id, name);
                prop_assert_eq!(&matching, &vec![id.key()]);
                prop_assert!(listed.iter().any(|registry| registry.id == id.as_str()));
            }
            Err(failure) => {
                prop_assert_ne!(matching.len(), 1, "{:?}", failure);
                let expected = if matching.is_empty() {
                    reasons::REGISTRY_NAME_NOT_FOUND
                } else {
                    reasons::REGISTRY_NAME_AMBIGUOUS
                };
                prop_assert_eq!(failure.reason, expected);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. The allow-list.

const ALLOW_SUBSCRIPTIONS: [&str; 2] = [
    "00000000-0000-4000-8000-000000000001",
    "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D",
];
/// Group names where one is a prefix of another.
const ALLOW_GROUPS: [&str; 3] = ["images", "Images-RG", "team"];
const ALLOW_NAMES: [&str; 2] = ["sharedimages", "TeamAcr01"];

fn allow_registry() -> impl Strategy<Value = RegistryId> {
    (
        0..ALLOW_SUBSCRIPTIONS.len(),
        0..ALLOW_GROUPS.len(),
        0..ALLOW_NAMES.len(),
        vec(any::<bool>(), 1..16),
    )
        .prop_map(|(s, g, n, flips)| {
            let text = registry_text(ALLOW_SUBSCRIPTIONS[s], ALLOW_GROUPS[g], ALLOW_NAMES[n]);
            RegistryId::parse(&flip_case(&text, &flips)).unwrap()
        })
}

/// An allow-list entry in the forms an administrator might type: any case, a trailing '/',
/// surrounding blanks.
fn typed(text: String, flips: &[bool], trailing_slash: bool, padded: bool) -> String {
    let mut text = flip_case(&text, flips);
    if trailing_slash {
        text.push('/');
    }
    if padded {
        text = format!(" {text} ");
    }
    text
}

/// A registry, and an allow-list whose entries often name it (its subscription, its group, the
/// registry itself, as typed), else another registry's.
fn allow_case() -> impl Strategy<Value = (AllowList, RegistryId)> {
    (allow_registry(), allow_registry()).prop_flat_map(|(registry, other)| {
        let entry_form = || (vec(any::<bool>(), 1..8), any::<bool>(), any::<bool>());
        let pick = |mine: String, theirs: String| prop_oneof![2 => Just(mine), 1 => Just(theirs)];
        let group_of = |id: &RegistryId| format!("{}/{}", id.subscription(), id.resource_group());
        let subscription = (
            pick(
                registry.subscription().to_string(),
                other.subscription().to_string(),
            ),
            entry_form(),
        )
            .prop_map(|(entry, (flips, _, padded))| typed(entry, &flips, false, padded));
        let group = (pick(group_of(&registry), group_of(&other)), entry_form())
            .prop_map(|(entry, (flips, slash, padded))| typed(entry, &flips, slash, padded));
        let id = (
            pick(registry.as_str().to_string(), other.as_str().to_string()),
            entry_form(),
        )
            .prop_map(|(entry, (flips, slash, padded))| typed(entry, &flips, slash, padded));
        (
            vec(subscription, 0..3),
            vec(group, 0..3),
            vec(id, 0..3),
            Just(registry),
        )
            .prop_map(|(subscriptions, groups, registries, registry)| {
                (
                    AllowList::new(&subscriptions, &groups, &registries).unwrap(),
                    registry,
                )
            })
    })
}

proptest! {
    #![proptest_config(config())]

    /// A lookup by name in the subscription (or the subscription and resource group) of a
    /// registry the allow-list admits is never refused before the list is read: the scope
    /// check is never stricter than the registry check.
    #[test]
    fn the_scope_check_admits_the_scope_of_every_allowed_registry(
        (list, registry) in allow_case(),
        group_flips in vec(any::<bool>(), 1..8),
    ) {
        // About two cases in three are admitted (the generator names the registry often);
        // for the others there is nothing to compare.
        if list.permits(&registry).is_err() {
            return Ok(());
        }
        let scope_of = |resource_group: Option<String>| -> ListScope {
            let lookup = RegistryLookup {
                name: registry.name().to_string(),
                resource_group,
                subscription: Some(registry.subscription().to_string()),
            };
            list_scope(&lookup, None).unwrap()
        };
        for scope in [
            scope_of(None),
            scope_of(Some(registry.resource_group().to_string())),
            scope_of(Some(flip_case(registry.resource_group(), &group_flips))),
        ] {
            prop_assert!(
                list.permits_scope(&scope).is_ok(),
                "{:?} admits {} but refuses {}: {:?}",
                list,
                registry,
                scope,
                list.permits_scope(&scope)
            );
        }
    }
}
