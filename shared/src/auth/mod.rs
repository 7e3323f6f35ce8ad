//! Authentication and authorisation shared by every function.
//!
//! - [`rbac`]: roles, the caller, and the one role × action table every handler consults.
//! - [`authenticator`]: `Authorization: Bearer` → [`Caller`] (or `401`); THE entry point.
//! - [`token`]: access tokens (HS256 JWT, 15 min, `kid`-rotated key set).
//! - [`keys`]: the key set, read from SSM Parameter Store once per cold start.
//! - [`password`]: argon2id hashing, the password policy, the dummy hash.
//! - [`users`]: the Users table (users, email uniqueness, the enabled-admin counter).
//! - [`refresh`]: refresh tokens (rotation families) and revoking every session of a user.

pub mod authenticator;
pub mod keys;
pub mod password;
pub mod rbac;
pub mod refresh;
pub mod token;
pub mod users;

pub use authenticator::{
    bearer_token, AuthSettings, Authenticator, BearerSecurity, UserStateCache,
};
pub use keys::{KeyError, KeySet};
pub use password::PasswordHasher;
pub use rbac::{authorize, Action, Caller, Role, Scope};
pub use token::{AccessClaims, TokenService};
pub use users::{User, UserRepo};
