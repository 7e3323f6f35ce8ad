//! Which attributes of an audited item the trail records: the one allow/deny list.
//!
//! - **Secret** attributes never reach the Audit table, not even their values' hashes: a
//!   change to one is recorded as the field name with both values `"[redacted]"` (an admin
//!   sees *that* a password changed, never what to). Secret means named so
//!   ([`SECRET_NAMES`]), or containing one of [`SECRET_WORDS`] unless explicitly allowed
//!   ([`NOT_SECRET`]: counters such as `token_version`). Deny by default: a new attribute
//!   called `api_key` or `reset_token` is secret without anyone remembering to list it.
//! - **Bookkeeping** attributes are not part of a change: keys and index keys (they follow
//!   from the fields), the writers' stamps, `version` and `updated_at` (every write moves
//!   them), exactly-once markers, TTLs, and the progress counters of jobs and imports (a
//!   10,000-account job moves them hundreds of times; its creation and state changes are
//!   audited), and a user's failed-login count (its lockout, `locked_until`, is audited). A stream record that changes only bookkeeping attributes (a `balance_sk`
//!   refresh, a progress step) writes no audit entry.
//! - Everything else is audited, with its old and new value.

/// Attribute names that are secret whatever their form.
pub const SECRET_NAMES: [&str; 3] = ["password_hash", "token_hash", "refresh_token"];
/// Words that make an attribute secret (`new_password`, `api_secret`, `reset_token`...).
pub const SECRET_WORDS: [&str; 6] = ["password", "secret", "token", "hash", "credential", "key"];
/// Names that contain a secret word but hold no secret.
pub const NOT_SECRET: [&str; 2] = ["token_version", "idempotency_key"];

/// Attributes that never make a change (see the module docs); names ending `_pk` or `_sk`
/// (index keys) are bookkeeping too.
pub const BOOKKEEPING: [&str; 20] = [
    "pk",
    "sk",
    "version",
    "updated_at",
    "expires_at",
    "bulk_jobs",
    "processed",
    "succeeded",
    "failed",
    "cancelled",
    "total",
    "plans_pending",
    "counts",
    "rows_read",
    "total_rows",
    "chunks_done",
    "created",
    "updated",
    "duplicates",
    "failed_logins",
];

/// What the trail does with an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldClass {
    /// Recorded with old and new values.
    Audited,
    /// Recorded as changed, values redacted.
    Secret,
    /// Not part of a change.
    Bookkeeping,
}

/// The placeholder of a secret's values.
pub const REDACTED: &str = "[redacted]";

/// The class of an attribute name.
pub fn classify(name: &str) -> FieldClass {
    let lower = name.to_ascii_lowercase();
    if SECRET_NAMES.contains(&lower.as_str())
        || (!NOT_SECRET.contains(&lower.as_str())
            && SECRET_WORDS.iter().any(|word| lower.contains(word)))
    {
        return FieldClass::Secret;
    }
    if BOOKKEEPING.contains(&lower.as_str())
        || super::actor::attribute::ALL.contains(&lower.as_str())
        || lower.ends_with("_pk")
        || lower.ends_with("_sk")
        || lower.starts_with("plan_")
    {
        return FieldClass::Bookkeeping;
    }
    FieldClass::Audited
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_denied_by_name_and_by_word() {
        for name in [
            "password_hash",
            "token_hash",
            "refresh_token",
            "new_password",
            "api_secret",
            "reset_token",
            "Password",
            "signing_key",
            "aws_credentials",
        ] {
            assert_eq!(classify(name), FieldClass::Secret, "{name}");
        }
        for name in ["token_version", "idempotency_key"] {
            assert_ne!(classify(name), FieldClass::Secret, "{name}");
        }
    }

    #[test]
    fn keys_stamps_counters_and_versions_are_bookkeeping() {
        for name in [
            "pk",
            "sk",
            "all_pk",
            "updated_sk",
            "version",
            "updated_at",
            "changed_by",
            "request_id",
            "bulk_jobs",
            "processed",
            "plan_3",
        ] {
            assert_eq!(classify(name), FieldClass::Bookkeeping, "{name}");
        }
    }

    #[test]
    fn the_fields_of_the_resources_are_audited() {
        for name in [
            "balance",
            "status",
            "assigned_agent_id",
            "debtor_name",
            "tags",
            "role",
            "disabled",
            "locked_until",
            "state",
            "amount",
            "deleted_at",
            "token_version",
        ] {
            assert_eq!(classify(name), FieldClass::Audited, "{name}");
        }
    }
}
