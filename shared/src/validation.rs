//! Request validation on top of `garde`: every body and query struct derives
//! `Deserialize` (with `#[serde(deny_unknown_fields)]`) and `garde::Validate`, its strings
//! are trimmed on the way in ([`trimmed`], [`trimmed_opt`]), length-capped
//! (`#[garde(length(chars, max = ..))]`) and free of control characters
//! (`#[garde(custom(no_control))]`). [`json`] / [`query`] parse and validate in one step and
//! answer `400` listing every invalid field with its reason.
//!
//! ```ignore
//! #[derive(Deserialize, garde::Validate)]
//! #[serde(deny_unknown_fields)]
//! struct Body {
//!     #[serde(deserialize_with = "shared::validation::trimmed")]
//!     #[garde(length(chars, min = 1, max = 100), custom(shared::validation::no_control))]
//!     name: String,
//! }
//! let body: Body = shared::validation::json(&req)?;
//! ```

use garde::Validate;
use lambda_http::Request;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::domain::MinorUnits;
use crate::error::{ApiError, FieldError};

/// The largest amount of money anywhere in the API, in minor units: 10^12 (ten billion
/// dollars in cents). Every amount a client sends is bounded by it — an account's
/// `original_balance` (0..=10^12), a payment's `amount` and a promise's `promise_amount`
/// (1..=10^12), balance filters of lists and bulk jobs (0..=10^12) — and the OpenAPI schema
/// says so (`minimum` / `maximum`). Bounded amounts keep every sum the system keeps in an
/// `i64`: a dashboard total would need 9.2 million accounts at the bound to overflow, and
/// the aggregates saturate (and log) rather than wrap if it ever did
/// (`shared::dashboard::tally`).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Checks that `amount` is an integer of minor units from `min` to [`MAX_AMOUNT`]; records
/// the error under `field` in `v` otherwise. `true` when it is.
pub fn check_amount(
    v: &mut crate::http::Validation,
    field: &str,
    amount: MinorUnits,
    min: i64,
) -> bool {
    let ok = (min..=MAX_AMOUNT).contains(&amount.0);
    if !ok {
        v.add(
            field,
            format!("must be an integer of minor units from {min} to {MAX_AMOUNT}"),
        );
    }
    ok
}

/// Deserialises a string with surrounding whitespace removed.
pub fn trimmed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    Ok(trim_owned(value))
}

/// [`trimmed`] for optional strings (`null` stays `None`).
pub fn trimmed_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(trim_owned))
}

fn trim_owned(value: String) -> String {
    let trimmed = value.trim();
    if trimmed.len() == value.len() {
        value
    } else {
        trimmed.to_owned()
    }
}

/// Text a [`no_control`] rule can look at.
pub trait Text {
    fn text(&self) -> Option<&str>;
}

impl Text for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl Text for str {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl Text for Option<String> {
    fn text(&self) -> Option<&str> {
        self.as_deref()
    }
}

/// A garde rule: no control characters (newlines and tabs included).
pub fn no_control<T: Text + ?Sized>(value: &T, _context: &()) -> garde::Result {
    match value.text() {
        Some(text) if text.chars().any(char::is_control) => {
            Err(garde::Error::new("must not contain control characters"))
        }
        _ => Ok(()),
    }
}

/// Runs `value`'s garde rules; a failure is one `400` listing each field and reason.
pub fn validated<T: Validate<Context = ()>>(value: T) -> Result<T, ApiError> {
    match value.validate() {
        Ok(()) => Ok(value),
        Err(report) => Err(ApiError::validation(
            report
                .iter()
                .map(|(path, error)| {
                    let field = path.to_string();
                    FieldError::new(
                        if field.is_empty() {
                            "body".to_owned()
                        } else {
                            field
                        },
                        error.message().to_owned(),
                    )
                })
                .collect(),
        )),
    }
}

/// The JSON body, parsed ([`crate::http::json_body`]) and validated.
pub fn json<T: DeserializeOwned + Validate<Context = ()>>(req: &Request) -> Result<T, ApiError> {
    validated(crate::http::json_body(req)?)
}

/// The query string, parsed ([`crate::http::query`]) and validated.
pub fn query<T: DeserializeOwned + Validate<Context = ()>>(req: &Request) -> Result<T, ApiError> {
    validated(crate::http::query(req)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Validate)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(deserialize_with = "trimmed")]
        #[garde(email, length(chars, max = 254))]
        email: String,
        #[serde(default, deserialize_with = "trimmed_opt")]
        #[garde(length(chars, min = 1, max = 10), custom(no_control))]
        name: Option<String>,
    }

    fn check(json: &str) -> Result<Body, ApiError> {
        validated(crate::http::parse_json::<Body>(json.as_bytes())?)
    }

    #[test]
    fn strings_are_trimmed_and_checked() {
        let body = check(r#"{"email":"  a@b.co ","name":" Ann "}"#).unwrap();
        assert_eq!(body.email, "a@b.co");
        assert_eq!(body.name.as_deref(), Some("Ann"));
        assert!(check(r#"{"email":"a@b.co"}"#).unwrap().name.is_none());
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let err = check(r#"{"email":"nope","name":"a\u0007b"}"#).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "name"], "{err:?}");
        let err = check(r#"{"email":"a@b.co","name":"   "}"#).unwrap_err();
        assert_eq!(err.errors[0].field, "name");
        let err = check(r#"{"email":"a@b.co","name":"x","admin":true}"#).unwrap_err();
        assert!(err.errors[0].message.contains("unknown field"));
    }
}
