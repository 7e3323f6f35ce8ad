//! Opaque, tamper-evident list cursors: `base64url(json) "." base64url(HMAC-SHA256)`.
//!
//! The MAC covers a *scope* string as well as the payload, so a cursor of one list (or of
//! one set of filters) is refused by another. Keys come from the key set
//! ([`crate::auth::KeySet::derive`]`("cursor")`): the active key signs, every key verifies,
//! so a key rotation does not break the cursors clients hold.
//!
//! ```ignore
//! let cursors = CursorSigner::from_key_set(&keys);
//! let next = cursors.sign("users", &last_id);               // into the response
//! let after: String = cursors.verify("users", &raw_cursor)?; // 400 if forged
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::auth::KeySet;
use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies cursors. Cheap to clone.
#[derive(Clone)]
pub struct CursorSigner {
    /// The first key signs; all verify.
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorSigner")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn invalid() -> ApiError {
    ApiError::invalid_field("cursor", "is not a cursor this list issued")
}

impl CursorSigner {
    /// `keys[0]` signs. An empty list is replaced by a random key (cursors then only live
    /// as long as the instance).
    pub fn new(mut keys: Vec<Vec<u8>>) -> Self {
        if keys.is_empty() {
            let mut key = vec![0_u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            keys.push(key);
        }
        Self { keys }
    }

    pub fn from_key_set(keys: &KeySet) -> Self {
        Self::new(keys.derive("cursor"))
    }

    fn mac(key: &[u8], scope: &str, payload: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail.
        let mut mac = match HmacSha256::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        };
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(payload);
        mac
    }

    /// A cursor carrying `value` for the list named `scope`.
    pub fn sign<T: Serialize>(&self, scope: &str, value: &T) -> Result<String, ApiError> {
        let payload = serde_json::to_vec(value).map_err(ApiError::internal)?;
        let tag = Self::mac(&self.keys[0], scope, &payload)
            .finalize()
            .into_bytes();
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// The value of a cursor this signer issued for `scope`; `400` (field `cursor`) for
    /// anything else. The MAC is compared in constant time.
    pub fn verify<T: DeserializeOwned>(&self, scope: &str, cursor: &str) -> Result<T, ApiError> {
        if cursor.len() > 2048 {
            return Err(invalid());
        }
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let genuine = self
            .keys
            .iter()
            .any(|key| Self::mac(key, scope, &payload).verify_slice(&tag).is_ok());
        if !genuine {
            return Err(invalid());
        }
        serde_json::from_slice(&payload).map_err(|_| invalid())
    }

    /// Where a list request resumes: the value of its `cursor` parameter, verified for
    /// `scope`, or `None` (the first page) when it has none.
    pub fn resume<T: DeserializeOwned>(
        &self,
        scope: &str,
        cursor: Option<&str>,
    ) -> Result<Option<T>, ApiError> {
        cursor.map(|c| self.verify(scope, c)).transpose()
    }

    /// The `next_cursor` of a page: `position` signed for `scope`, or `None` on the last page.
    pub fn next<T: Serialize>(
        &self,
        scope: &str,
        position: Option<&T>,
    ) -> Result<Option<String>, ApiError> {
        position.map(|p| self.sign(scope, p)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let signer = CursorSigner::new(vec![vec![1; 32]]);
        let cursor = signer.sign("users", &("01ABC", 5)).unwrap();
        let value: (String, u32) = signer.verify("users", &cursor).unwrap();
        assert_eq!(value, ("01ABC".to_owned(), 5));

        assert!(signer.verify::<(String, u32)>("accounts", &cursor).is_err());
        let (payload, tag) = cursor.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"["01ZZZ",5]"#));
        assert!(signer.verify::<(String, u32)>("users", &forged).is_err());
        assert!(signer.verify::<(String, u32)>("users", payload).is_err());
        assert!(signer.verify::<(String, u32)>("users", "!!.!!").is_err());
        let other = CursorSigner::new(vec![vec![2; 32]]);
        assert!(other.verify::<(String, u32)>("users", &cursor).is_err());
        let err = signer.verify::<(String, u32)>("users", "x.y").unwrap_err();
        assert_eq!(err.errors[0].field, "cursor");
    }

    #[test]
    fn older_keys_still_verify() {
        let old = CursorSigner::new(vec![vec![1; 32]]);
        let rotated = CursorSigner::new(vec![vec![2; 32], vec![1; 32]]);
        let cursor = old.sign("users", &"x").unwrap();
        assert_eq!(rotated.verify::<String>("users", &cursor).unwrap(), "x");
    }
}
