//! The signing key set: one active key signs, every key in the set verifies, so a key can
//! rotate without signing anybody out (add a new key, make it active, drop the old one after
//! the longest token lifetime).
//!
//! On AWS the set is an SSM Parameter Store `SecureString` whose *name* the template passes
//! as `JWT_KEYS_PARAMETER`; it is read once per cold start ([`KeySet::load_from_ssm`]).
//! Locally the same code reads it from moto (`AWS_ENDPOINT_URL_SSM`). Its value is JSON:
//!
//! ```json
//! {"active": "k01jd...", "keys": {"k01jd...": "<base64url of 32+ random bytes>"}}
//! ```
//!
//! The key material never appears in logs: [`KeySet`]'s `Debug` prints the key ids only.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The variable naming the SSM parameter that holds the key set.
pub const KEYS_PARAMETER_VARIABLE: &str = "JWT_KEYS_PARAMETER";

/// The shortest key accepted: HS256 wants at least the hash's 256 bits.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a key set could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key set is not valid JSON of the form {{\"active\",\"keys\"}}: {0}")]
    Format(String),
    #[error("the key set's active key id {0} is not among its keys")]
    NoActive(String),
    #[error("key {0} is not base64url or shorter than 32 bytes")]
    BadKey(String),
    #[error("reading SSM parameter {name}: {reason}")]
    Ssm { name: String, reason: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySetJson {
    active: String,
    keys: BTreeMap<String, String>,
}

/// Secret keys by id, one of them active.
#[derive(Clone)]
pub struct KeySet {
    active: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("active", &self.active)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// Parses the parameter's JSON value.
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        // The serde error may quote a fragment of the input; give only its position.
        let raw: KeySetJson = serde_json::from_str(json).map_err(|err| {
            KeyError::Format(format!("line {} column {}", err.line(), err.column()))
        })?;
        let mut keys = BTreeMap::new();
        for (kid, encoded) in raw.keys {
            let bytes = URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .map_err(|_| KeyError::BadKey(kid.clone()))?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(KeyError::BadKey(kid));
            }
            keys.insert(kid, bytes);
        }
        if !keys.contains_key(&raw.active) {
            return Err(KeyError::NoActive(raw.active));
        }
        Ok(Self {
            active: raw.active,
            keys,
        })
    }

    /// A fresh set with one random 32-byte key, as the JSON to store (seed-admin).
    pub fn generate_json() -> String {
        let mut key = [0_u8; MIN_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        let kid = format!("k{}", ulid::Ulid::new().to_string().to_lowercase());
        let json = KeySetJson {
            active: kid.clone(),
            keys: BTreeMap::from([(kid, URL_SAFE_NO_PAD.encode(key))]),
        };
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// Reads the set from SSM (`GetParameter` with decryption), once per cold start.
    pub async fn load_from_ssm(client: &aws_sdk_ssm::Client, name: &str) -> Result<Self, KeyError> {
        let output = client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|err| KeyError::Ssm {
                name: name.to_owned(),
                reason: aws_sdk_ssm::error::DisplayErrorContext(err).to_string(),
            })?;
        let value = output
            .parameter()
            .and_then(|p| p.value())
            .ok_or_else(|| KeyError::Ssm {
                name: name.to_owned(),
                reason: "the parameter has no value".to_owned(),
            })?;
        Self::parse(value)
    }

    /// The id and secret of the signing key.
    pub fn active(&self) -> (&str, &[u8]) {
        // `parse` checked that the active id is in the map; the fallback is unreachable.
        let secret = self
            .keys
            .get(&self.active)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        (&self.active, secret)
    }

    /// Every key, for verification.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// A key derived from each key for another purpose (`purpose` separates uses, so a
    /// cursor signature can never pass as a token signature), the active key's first.
    pub fn derive(&self, purpose: &str) -> Vec<Vec<u8>> {
        let derive_one = |secret: &[u8]| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable_hmac());
            mac.update(b"collectpro/derive/v1/");
            mac.update(purpose.as_bytes());
            mac.finalize().into_bytes().to_vec()
        };
        let (_, active) = self.active();
        let mut out = vec![derive_one(active)];
        out.extend(
            self.keys
                .iter()
                .filter(|(kid, _)| **kid != self.active)
                .map(|(_, secret)| derive_one(secret)),
        );
        out
    }
}

/// HMAC accepts keys of any length, so `new_from_slice` cannot fail.
fn unreachable_hmac() -> Hmac<Sha256> {
    unreachable!("HMAC-SHA256 accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sets_parse_and_debug_hides_keys() {
        let json = KeySet::generate_json();
        let set = KeySet::parse(&json).unwrap();
        let (kid, secret) = set.active();
        assert!(kid.starts_with('k'));
        assert_eq!(secret.len(), 32);
        let debug = format!("{set:?}");
        let encoded = URL_SAFE_NO_PAD.encode(secret);
        assert!(!debug.contains(&encoded));
        assert_eq!(set.derive("cursor").len(), 1);
        assert_ne!(set.derive("cursor")[0], set.derive("other")[0]);
    }

    #[test]
    fn bad_sets_are_refused() {
        assert!(matches!(KeySet::parse("nope"), Err(KeyError::Format(_))));
        assert!(matches!(
            KeySet::parse(r#"{"active":"a","keys":{"a":"c2hvcnQ"}}"#),
            Err(KeyError::BadKey(_))
        ));
        let key = URL_SAFE_NO_PAD.encode([7_u8; 32]);
        assert!(matches!(
            KeySet::parse(&format!(r#"{{"active":"b","keys":{{"a":"{key}"}}}}"#)),
            Err(KeyError::NoActive(_))
        ));
    }
}
