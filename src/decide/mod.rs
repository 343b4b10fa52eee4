//! Pure decision logic, no I/O: spec validation, role choice and assignment planning, and the
//! conditions and events that describe an outcome. Everything here is a function over plain data
//! and is tested as such.

pub mod allowlist;
pub mod conditions;
pub mod plan;
pub mod reasons;
pub mod status_patch;
pub mod validate;
