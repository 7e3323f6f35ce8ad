//! Prints what verifying an access token costs (signature, `exp`/`iss`/`aud`, claims
//! parsing: everything `Authenticator` does before its cached user-state check). Never fails
//! on a timer. `cargo nextest run -p auth -E 'test(bench)' --no-capture`.

use std::time::Instant;

use shared::auth::token::{TokenService, DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use shared::auth::{KeySet, Role};
use shared::domain::Id;

#[test]
fn bench_access_token_verification() {
    let keys = KeySet::parse(&KeySet::generate_json()).unwrap();
    let service = TokenService::new(&keys, DEFAULT_ISSUER, DEFAULT_AUDIENCE);
    let (token, _) = service.issue(Id::generate(), Role::Agent, 0).unwrap();
    for _ in 0..1_000 {
        assert!(service.verify(&token).is_ok());
    }
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(service.verify(std::hint::black_box(&token)).unwrap());
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("FIGURE access-token verification (HS256, kid lookup, exp/iss/aud): {per:.2} µs per token (n={n}, test profile: dependencies opt-level 3)");
}
