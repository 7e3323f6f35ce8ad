"""schemathesis hooks of infra/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

Each hook covers one thing the OpenAPI document cannot say; everything else the fuzzer
learns from the document alone.
"""

import os

import schemathesis
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario

# The access token of the role under test is sent by the dynamic auth of schemathesis.toml.


def _whole_numbers(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


# The identities the runs sign in as (fuzz.sh: the admin, manager, viewer and agent1).
PROTECTED_EMAILS = {
    e.strip().lower() for e in os.environ.get("FUZZ_PROTECTED_EMAILS", "").split(",") if e.strip()
}


@schemathesis.hook
def before_call(context, case, kwargs):
    """Sign-ins never name the identities the runs use: schemathesis reuses values it saw
    in responses (an email from GET /auth/me, GET /users), and five wrong passwords lock an
    account for 15 minutes by design, which would end every later run as that identity.
    Lockout has its own tests.

    And two things about valid requests that no JSON Schema keyword can say:

    - A list's `cursor` is opaque and HMAC-signed (shared::cursor::CursorSigner): a value the
      API did not issue is a 400 by design. Valid requests carry no invented cursor; cursor
      tampering, scope and expiry have their own tests.
    - JSON Schema counts `43.0` as the integer 43 (schemathesis sends such numbers on
      purpose), while the API refuses a number written with a fraction on purpose (money
      never travels as a float: DESIGN.md, shared::domain::MinorUnits). Valid requests
      write whole numbers as integers.
    """
    if case.method == "POST" and case.path == "/auth/login" and isinstance(case.body, dict):
        email = case.body.get("email")
        if isinstance(email, str) and email.strip().lower() in PROTECTED_EMAILS:
            case.body = {**case.body, "email": "someone-else@collectpro.local"}
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if case.query:
        case.query.pop("cursor", None)
    if isinstance(case.body, (dict, list)):
        case.body = _whole_numbers(case.body)


@schemathesis.check
def undeclared_method_is_api_gateways_404(ctx, response, case):
    """Replaces the built-in `unsupported_method` check (off in schemathesis.toml), which
    expects 405 with `Allow`. API Gateway HTTP APIs answer a method no route declares with
    `404 {"message":"Not Found"}`, before any authorizer or function runs (there is no 405
    in HTTP APIs), and the local gateway answers the same; this checks exactly that."""
    meta = case.meta
    if meta is None or not isinstance(meta.phase.data, CoveragePhaseData):
        return None
    if meta.phase.data.scenario != CoverageScenario.UNSPECIFIED_HTTP_METHOD:
        return None
    if response.request.method == "OPTIONS":
        return None  # CORS preflight, answered by API Gateway's CORS configuration
    body = response.json() if response.content else None
    assert response.status_code == 404 and body == {"message": "Not Found"}, (
        f"{response.request.method} {case.path}: expected API Gateway's 404 "
        f'{{"message":"Not Found"}}, got {response.status_code} {response.text[:200]}'
    )
    return None
