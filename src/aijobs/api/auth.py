"""Who is calling: Supabase-compatible JWTs for users, the service key for server-side callers.

Tokens are checked with an explicit algorithm list chosen by the key that verifies them:
HS256 only against JWT_SECRET, ES256/RS256 only against a key from JWT_JWKS_URL. So `alg:
none`, an RS256 header on an HS256 deployment, or an HS256 token "signed" with a public key
(algorithm confusion) all fail. `exp`, `aud` and `sub` are required. Every failure is a 401
raised before any database work, so a bad token writes nothing. A JWKS that cannot be fetched
says nothing about the token: that is a 503 with Retry-After, not a 401 telling a user with a
good token to sign in again.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

import jwt
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from aijobs.api.problems import ProblemError, invalid, unauthorized
from aijobs.config import Settings

log = logging.getLogger("aijobs.api")

# What /openapi.json declares (securitySchemes, and each operation's `security`), so client
# generators and Swagger UI's Authorize button know what to send. They never refuse anything
# (auto_error=False): the checks below read the headers themselves and word the 401s.
USER_JWT = HTTPBearer(
    scheme_name="BearerJWT",
    bearerFormat="JWT",
    description="The signed-in user's Supabase access token (HS256 with JWT_SECRET, or ES256/RS256 "
    "from JWT_JWKS_URL; `aud`, `exp` and a uuid `sub` required). On admin endpoints, a token "
    "whose `app_metadata.role` is `admin`.",
    auto_error=False,
)
SERVICE_KEY = HTTPBearer(
    scheme_name="ServiceKey",
    description="SERVICE_ROLE_KEY, for server-side callers of the admin endpoints. Never ship it to "
    "a browser or an extension; user endpoints refuse it.",
    auto_error=False,
)
SERVICE_KEY_HEADER = APIKeyHeader(
    name="apikey",
    scheme_name="ServiceKeyHeader",
    description="SERVICE_ROLE_KEY in Supabase's `apikey` header (admin endpoints).",
    auto_error=False,
)
Declared = Annotated[HTTPAuthorizationCredentials | None, Security(USER_JWT)]

HMAC_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["ES256", "RS256"]
#: The claims RFC 7519 makes NumericDates.
TIME_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `claims` go into `request.jwt.claims` for row-level security."""

    user_id: UUID | None
    claims: dict[str, Any] = field(default_factory=dict)
    service: bool = False

    @property
    def is_admin(self) -> bool:
        if self.service:
            return True
        meta = self.claims.get("app_metadata")
        return isinstance(meta, dict) and meta.get("role") == "admin"

    def tenant(self, claim: str | None) -> UUID:
        """Whose fair share and limit on running jobs this user's creations count in: the
        uuid at `claim` (TENANT_CLAIM, a dot-separated path) in the verified token, else the
        user. A claim present but not a uuid is a 422 naming it: counting those jobs as the
        user's would quietly take them out of their organisation's share."""
        assert self.user_id is not None
        if claim is None:
            return self.user_id
        value: Any = self.claims
        for name in claim.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            return self.user_id
        if not _is_canonical_uuid(value):
            raise invalid(f"token.{claim}", f"the tenant claim {claim} must be a uuid")
        return UUID(value)


#: What a client is told to wait when the JWKS cannot be fetched (each fetch waits up to 10 s).
JWKS_RETRY_AFTER_SECONDS = 5

#: How long a verified token is trusted without checking it again (bounded further by `exp`),
#: and how many are remembered; a JWKS key withdrawn upstream stops working within the TTL.
VERIFIED_TTL = 60.0
VERIFIED_MAX = 10_000


class TokenVerifier:
    """Verifies bearer tokens against the configured keys."""

    def __init__(self, settings: Settings) -> None:
        self.secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.service_key = settings.service_role_key.get_secret_value() if settings.service_role_key else None
        self.jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=600, timeout=10)
            if settings.jwt_jwks_url
            else None
        )
        self._verified: dict[str, tuple[float, float, dict[str, Any]]] = {}

    def is_service_key(self, value: str | None) -> bool:
        if not value or not self.service_key:
            return False
        return hmac.compare_digest(value.encode(), self.service_key.encode())

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or a 401 saying why not.

        A token that verified is remembered for up to VERIFIED_TTL seconds (never past its
        `exp`): a client sends the same token with every request, and checking the signature
        and claims again each time was a tenth of the API's CPU per request.
        """
        now = time.monotonic()
        cached = self._verified.get(token)
        if cached is not None and cached[0] > now and cached[1] > time.time():
            return dict(cached[2])
        claims = await self._verify(token)
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (now + VERIFIED_TTL, float(claims["exp"]), dict(claims))
        return claims

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("malformed bearer token") from None
        alg = header.get("alg")
        if alg in HMAC_ALGORITHMS and self.secret:
            key: Any = self.secret
            algorithms = HMAC_ALGORITHMS
        elif alg in JWKS_ALGORITHMS and self.jwks is not None:
            try:
                # PyJWKClient fetches over blocking HTTP (cached afterwards): keep it off the loop.
                signing_key = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
            except (jwt.PyJWKClientConnectionError, ValueError) as exc:
                # Out of reach, or answering what is not JSON (a proxy's error page): PyJWT
                # lets the JSON error through as a bare ValueError.
                log.warning("JWKS unreachable or unreadable, answering 503: %s", exc)
                raise ProblemError(
                    503,
                    "the keys that verify this token cannot be fetched right now; try again",
                    code="auth_unavailable",
                    headers={"Retry-After": str(JWKS_RETRY_AFTER_SECONDS)},
                ) from None
            except jwt.PyJWTError as exc:
                raise unauthorized(f"no signing key for this token: {exc}") from None
            # The key decides the algorithm, not the token: an ES256 header naming an RSA key's
            # kid would otherwise reach the EC verifier with an RSA key, which raises TypeError
            # (a 500 for anyone, unauthenticated). PyJWK knows its algorithm from the JWK.
            if signing_key.algorithm_name != alg:
                raise unauthorized(f"token algorithm {alg!r} does not match its signing key")
            key = signing_key.key
            algorithms = [alg]
        else:
            raise unauthorized(f"token algorithm {alg!r} is not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "aud"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token has expired") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f"token audience is not {self.audience!r}") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid token: {exc}") from None
        except (TypeError, ValueError):
            # Belt and braces: the crypto backend refusing a key/token pairing is a bad token.
            raise unauthorized("invalid token: its signature cannot be checked with this key") from None
        # PyJWT reads a time claim with int(), so "exp": "99999999999" passed as a date far
        # away; RFC 7519 makes them JSON numbers.
        for name in TIME_CLAIMS:
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise unauthorized(f"invalid token: the {name!r} claim must be a number")
        # auth.uid() casts `sub` to uuid, and PostgreSQL reads fewer spellings than Python's
        # UUID() (no `urn:uuid:`, no hyphen between every digit): only the canonical form.
        if not _is_canonical_uuid(claims["sub"]):
            raise unauthorized("token subject is not a user id (uuid)")
        if "\\u0000" in json.dumps(claims):
            raise unauthorized("token claims contain a NUL character")
        return claims


def _is_canonical_uuid(value: object) -> bool:
    """`8-4-4-4-12` hex digits, either case: what Supabase issues and PostgreSQL reads."""
    if not isinstance(value, str):
        return False
    try:
        return str(UUID(value)) == value.lower()
    except ValueError:
        return False


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


def verifier(request: Request) -> TokenVerifier:
    verifier_: TokenVerifier = request.app.state.aijobs.verifier
    return verifier_


async def current_user(request: Request, _user_jwt: Declared) -> Principal:
    """A signed-in user (the service key is not a user: it has no row-level identity)."""
    token = _bearer(request)
    if token is None:
        raise unauthorized("sign in: send Authorization: Bearer <access token>")
    v = verifier(request)
    if v.is_service_key(token):
        raise unauthorized("the service key is for admin endpoints; send a user's token here")
    claims = await v.verify(token)
    return Principal(user_id=UUID(str(claims["sub"])), claims=claims)


async def admin(
    request: Request,
    _user_jwt: Declared,
    _service_key: Annotated[HTTPAuthorizationCredentials | None, Security(SERVICE_KEY)],
    _service_key_header: Annotated[str | None, Security(SERVICE_KEY_HEADER)],
) -> Principal:
    """The service key (as Bearer or `apikey`), or a user token with an admin claim."""
    v = verifier(request)
    token = _bearer(request)
    if v.is_service_key(token) or (token is None and v.is_service_key(request.headers.get("apikey"))):
        return Principal(user_id=None, service=True)
    if token is None:
        raise unauthorized("admin endpoints need the service key or an admin's token")
    claims = await v.verify(token)
    principal = Principal(user_id=UUID(str(claims["sub"])), claims=claims)
    if not principal.is_admin:
        raise ProblemError(403, "this endpoint is for administrators", code="forbidden")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
Admin = Annotated[Principal, Depends(admin)]
