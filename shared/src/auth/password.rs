//! Passwords: argon2id in PHC strings, the password policy, and a dummy hash that makes an
//! unknown email cost the same as a wrong password.
//!
//! Parameters are OWASP's first argon2id recommendation: m = 19 MiB, t = 2, p = 1. The PHC
//! string records them, so raising them later only needs a new [`Params`]: verification
//! reads each hash's own parameters, and [`PasswordHasher::needs_rehash`] tells login to
//! store a fresh hash when a stored one is weaker.
//!
//! Hashing and verifying cost tens of milliseconds of CPU: async callers use the `_blocking`
//! helpers, which run on `tokio::task::spawn_blocking`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::ApiError;

/// OWASP: argon2id, 19 MiB, 2 passes, 1 lane.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 128;

/// Passwords of 12+ characters that lists of breached passwords are full of (compared
/// case-insensitively). Short ones are already refused by the length rule.
const COMMON: &[&str] = &[
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456123456",
    "qwertyuiopasdf",
    "qwertyuiop12",
    "qwerty123456",
    "qwerty1234567",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "welcome123456",
    "changeme1234",
    "administrator",
    "administrator1",
    "admin1234567",
    "adminadmin123",
    "trustno1trustno1",
    "football1234",
    "baseball1234",
    "princess1234",
    "sunshine1234",
    "monkey123456",
    "dragon123456",
    "superman1234",
    "abcdefghijkl",
    "abc123abc123",
    "aaaaaaaaaaaa",
    "000000000000",
    "111111111111",
    "collectpro123",
    "collectpro1234",
    "correcthorsebatterystaple",
];

/// Checks the policy; each broken rule is one message for the `password` field.
pub fn policy_errors(password: &str, email: &str) -> Vec<&'static str> {
    let mut errors = Vec::new();
    let length = password.chars().count();
    if length < MIN_LENGTH {
        errors.push("must be at least 12 characters");
    }
    if length > MAX_LENGTH {
        errors.push("must be at most 128 characters");
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        errors.push("is too common");
    }
    let email = email.trim().to_lowercase();
    if !email.is_empty() && lower.contains(&email)
        || email
            .split('@')
            .next()
            .is_some_and(|local| local.len() >= 4 && lower == local)
    {
        errors.push("must not be (or contain) the email address");
    }
    if password.chars().any(char::is_control) {
        errors.push("must not contain control characters");
    }
    errors
}

/// Hashes and verifies with fixed parameters. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// A hash of a random password, verified against when the email is unknown.
    dummy: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

/// The dummy hash of the production parameters: a hash of 32 random bytes that were thrown
/// away once it was made. Verifying against it costs what a real verification costs (the
/// PHC string carries the same m, t, p), and no password matches it; being a constant, it
/// costs no cold start (computing it at init took one argon2 hash: 19 MiB of peak memory and
/// tens of milliseconds of Init Duration in every function that signs users in or creates
/// them, issue 17).
const PRODUCTION_DUMMY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$UPxgZMXiGjwqYJM5qkbY9w$ungAnM/CUcOTA/0c2fFLvaP1QkA7VpdyOfzCehKa6QQ";

impl PasswordHasher {
    /// The production parameters, with [`PRODUCTION_DUMMY`] as the dummy hash.
    pub fn new() -> Result<Self, ApiError> {
        let params =
            Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).map_err(ApiError::internal)?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            dummy: PRODUCTION_DUMMY.to_owned(),
        })
    }

    /// Other parameters (tests use cheap ones); the dummy hash is computed with them, so an
    /// unknown email still costs what a wrong password costs.
    pub fn with_params(params: Params) -> Result<Self, ApiError> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = Self {
            argon2,
            dummy: String::new(),
        };
        let random = ulid::Ulid::new().to_string();
        hasher.dummy = hasher.hash(&random)?;
        Ok(hasher)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
    pub fn hash(&self, password: &str) -> Result<String, ApiError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(ApiError::internal)
    }

    /// Whether `password` matches `phc` (with the parameters `phc` records). A malformed
    /// stored hash is a mismatch.
    pub fn verify(&self, phc: &str, password: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(parsed) => self
                .argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Verifies against the dummy hash: same cost as a real verification, always false.
    pub fn verify_dummy(&self, password: &str) -> bool {
        let _ = self.verify(&self.dummy, password);
        false
    }

    /// Whether `phc` was made with other (older) parameters than ours.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(stored) = Params::try_from(&parsed) else {
            return true;
        };
        let ours = self.argon2.params();
        parsed.algorithm != Algorithm::Argon2id.ident()
            || stored.m_cost() < ours.m_cost()
            || stored.t_cost() < ours.t_cost()
            || stored.p_cost() < ours.p_cost()
    }

    /// [`Self::hash`] on the blocking pool.
    pub async fn hash_blocking(&self, password: String) -> Result<String, ApiError> {
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(ApiError::internal)?
    }

    /// [`Self::verify`] (or the dummy when `phc` is `None`) on the blocking pool.
    pub async fn verify_blocking(
        &self,
        phc: Option<String>,
        password: String,
    ) -> Result<bool, ApiError> {
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => hasher.verify(&phc, &password),
            None => hasher.verify_dummy(&password),
        })
        .await
        .map_err(ApiError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::with_params(Params::new(1024, 1, 1, None).unwrap()).unwrap()
    }

    #[test]
    fn hashes_verify_and_record_their_parameters() {
        let hasher = PasswordHasher::new().unwrap();
        let phc = hasher.hash("a long enough passphrase").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify(&phc, "a long enough passphrase"));
        assert!(!hasher.verify(&phc, "a long enough passphrasE"));
        assert!(!hasher.needs_rehash(&phc));
        assert!(!hasher.verify("not a phc string", "x"));
        assert!(!hasher.verify_dummy("anything"));
    }

    #[test]
    fn the_production_dummy_costs_what_a_real_hash_costs() {
        let hasher = PasswordHasher::new().unwrap();
        let real = hasher.hash("a long enough passphrase").unwrap();
        let params = |phc: &str| Params::try_from(&PasswordHash::new(phc).unwrap()).unwrap();
        assert_eq!(params(PRODUCTION_DUMMY), params(&real));
        assert!(!hasher.needs_rehash(PRODUCTION_DUMMY));
        assert!(!hasher.verify(PRODUCTION_DUMMY, "a long enough passphrase"));
    }

    #[test]
    fn weaker_hashes_need_a_rehash() {
        let weak = fast().hash("a long enough passphrase").unwrap();
        let hasher = PasswordHasher::new().unwrap();
        assert!(hasher.verify(&weak, "a long enough passphrase"));
        assert!(hasher.needs_rehash(&weak));
        assert!(hasher.needs_rehash("garbage"));
    }

    #[test]
    fn the_policy_names_each_broken_rule() {
        assert!(policy_errors("a good long passphrase", "x@y.z").is_empty());
        assert_eq!(
            policy_errors("short", "x@y.z"),
            ["must be at least 12 characters"]
        );
        assert!(policy_errors("Password1234", "x@y.z").contains(&"is too common"));
        assert!(!policy_errors(&"x".repeat(129), "x@y.z").is_empty());
        assert!(!policy_errors("someone@example.com", "Someone@Example.com").is_empty());
        assert!(!policy_errors("tab\there and more", "x@y.z").is_empty());
    }
}
