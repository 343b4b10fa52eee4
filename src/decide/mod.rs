//! Pure decision logic, no I/O: spec validation, the allow-list, role choice and assignment
//! planning, the conditions and events that describe an outcome, and for `check` what a delegation
//! condition allows and the preflight verdict per registry. Everything here is a function over
//! plain data and is tested as such.

pub mod allowlist;
pub mod claims;
pub mod conditions;
pub mod delegation;
pub mod failure;
pub mod ownership;
pub mod plan;
pub mod preflight;
pub mod reasons;
pub mod registry_lookup;
pub mod report;
pub mod repositories;
pub mod status_patch;
pub mod validate;
