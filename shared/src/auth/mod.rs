//! Authentication and authorisation shared by every function.
//!
//! - [`rbac`]: roles, the caller, and the one role × action table every handler consults.

pub mod rbac;

pub use rbac::{authorize, Action, Caller, Role, Scope};
