//! Access tokens: HS256 JWTs of 15 minutes with `sub`, `role`, `ver`, `exp`, `iat`, `jti`,
//! `iss`, `aud`, and a `kid` header naming the key of the [`KeySet`] that signed them.
//!
//! Verification pins the algorithm to HS256 (`alg: none`, RS256, anything else: refused),
//! requires a known `kid`, and checks `exp` (30 s leeway for clock skew), `iss` and `aud`.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::KeySet;
use super::rbac::Role;
use crate::domain::Id;
use crate::error::ApiError;

/// Lifetime of an access token.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Default `iss` / `aud` (overridable with `TOKEN_ISSUER` / `TOKEN_AUDIENCE`).
pub const DEFAULT_ISSUER: &str = "collectpro";
pub const DEFAULT_AUDIENCE: &str = "collectpro-api";
const ALGORITHM: Algorithm = Algorithm::HS256;
const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub role: Role,
    /// The user's token version when the token was issued: disabling a user or changing
    /// their role bumps it, which retires every earlier token (see `Authenticator`).
    pub ver: u64,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
}

/// Why a token was refused (the HTTP answer is always the same 401; this goes to logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token header is malformed or names another algorithm")]
    Header,
    #[error("the token has no kid or an unknown one")]
    UnknownKey,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
}

/// Signs and verifies access tokens with a key set. Built once per cold start.
pub struct TokenService {
    active_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("active_kid", &self.active_kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    pub fn new(keys: &KeySet, issuer: &str, audience: &str) -> Self {
        let (kid, secret) = keys.active();
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = false;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        Self {
            active_kid: kid.to_owned(),
            encoding: EncodingKey::from_secret(secret),
            decoding: keys
                .iter()
                .map(|(kid, secret)| (kid.to_owned(), DecodingKey::from_secret(secret)))
                .collect(),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// A signed token for `user` and when it expires (unix seconds).
    pub fn issue(&self, user: Id, role: Role, ver: u64) -> Result<(String, i64), ApiError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: user.to_string(),
            role,
            ver,
            exp: now + ACCESS_TOKEN_TTL_SECS,
            iat: now,
            jti: ulid::Ulid::new().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.active_kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(ApiError::internal)?;
        Ok((token, claims.exp))
    }

    /// Verifies signature (algorithm pinned, key by `kid`), `exp`, `iss`, `aud`.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Header)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::Header);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                other => TokenError::Invalid(format!("{other:?}")),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn service() -> (KeySet, TokenService) {
        let keys = KeySet::parse(&KeySet::generate_json()).unwrap();
        let service = TokenService::new(&keys, DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        (keys, service)
    }

    fn sign_raw(claims: &serde_json::Value, header: &Header, secret: &[u8]) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn claims(exp_offset: i64, aud: &str) -> serde_json::Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        serde_json::json!({"sub": Id::generate().to_string(), "role": "admin", "ver": 0,
            "exp": now + exp_offset, "iat": now, "jti": "x", "iss": DEFAULT_ISSUER, "aud": aud})
    }

    #[test]
    fn issued_tokens_verify() {
        let (_, service) = service();
        let user = Id::generate();
        let (token, exp) = service.issue(user, Role::Agent, 3).unwrap();
        let claims = service.verify(&token).unwrap();
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(claims.role, Role::Agent);
        assert_eq!(claims.ver, 3);
        assert_eq!(claims.exp, exp);
    }

    #[test]
    fn expired_tampered_none_wrong_aud_and_wrong_key_are_refused() {
        let (keys, service) = service();
        let (kid, secret) = keys.active();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());

        let expired = sign_raw(&claims(-120, DEFAULT_AUDIENCE), &header, secret);
        assert_eq!(service.verify(&expired), Err(TokenError::Expired));

        let wrong_aud = sign_raw(&claims(600, "someone-else"), &header, secret);
        assert!(matches!(
            service.verify(&wrong_aud),
            Err(TokenError::Invalid(_))
        ));

        let wrong_key = sign_raw(&claims(600, DEFAULT_AUDIENCE), &header, &[9_u8; 32]);
        assert!(matches!(
            service.verify(&wrong_key),
            Err(TokenError::Invalid(_))
        ));

        let (good, _) = service.issue(Id::generate(), Role::Viewer, 0).unwrap();
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        payload["role"] = "admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
        assert!(
            service.verify(&parts.join(".")).is_err(),
            "tampered payload"
        );

        let none_header =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
        let none_token = format!("{none_header}.{}.", parts[1]);
        assert_eq!(service.verify(&none_token), Err(TokenError::Header));

        let mut hs512 = Header::new(Algorithm::HS512);
        hs512.kid = Some(kid.to_owned());
        let other_alg = sign_raw(&claims(600, DEFAULT_AUDIENCE), &hs512, secret);
        assert_eq!(service.verify(&other_alg), Err(TokenError::Header));

        let mut no_kid = Header::new(Algorithm::HS256);
        no_kid.kid = None;
        let no_kid = sign_raw(&claims(600, DEFAULT_AUDIENCE), &no_kid, secret);
        assert_eq!(service.verify(&no_kid), Err(TokenError::UnknownKey));
        assert_eq!(service.verify("garbage"), Err(TokenError::Header));
    }

    #[test]
    fn rotated_keys_still_verify() {
        let old = KeySet::parse(&KeySet::generate_json()).unwrap();
        let new = KeySet::parse(&KeySet::generate_json()).unwrap();
        let (old_kid, old_secret) = old.active();
        let (new_kid, new_secret) = new.active();
        let rotated = KeySet::parse(
            &serde_json::json!({"active": new_kid, "keys": {
                old_kid: URL_SAFE_NO_PAD.encode(old_secret),
                new_kid: URL_SAFE_NO_PAD.encode(new_secret)}})
            .to_string(),
        )
        .unwrap();
        let (token, _) = TokenService::new(&old, DEFAULT_ISSUER, DEFAULT_AUDIENCE)
            .issue(Id::generate(), Role::Viewer, 0)
            .unwrap();
        let service = TokenService::new(&rotated, DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        assert!(service.verify(&token).is_ok());
        let (fresh, _) = service.issue(Id::generate(), Role::Viewer, 0).unwrap();
        let header = jsonwebtoken::decode_header(&fresh).unwrap();
        assert_eq!(header.kid.as_deref(), Some(new_kid));
    }
}
