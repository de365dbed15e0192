"""JWT checks (HS256 secret and ES256 from a JWKS) and the service key: each bad token is a 401
with problem+json, and nothing reaches the database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ROOT
from tests.integration.api.conftest import StartApi
from tests.support.api_server import JWT_SECRET, SERVICE_KEY
from tests.support.net import free_port
from tests.support.snapshots import total_rows

SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(user: uuid.UUID, **changes: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": str(user),
        "aud": "authenticated",
        "role": "authenticated",
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def unsigned(header: dict[str, object], body: dict[str, object], signature: bytes = b"") -> str:
    head = b64(json.dumps(header).encode())
    payload = b64(json.dumps(body).encode())
    return f"{head}.{payload}.{b64(signature)}"


def hs512(body: dict[str, object]) -> str:
    head = b64(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
    payload = b64(json.dumps(body).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{head}.{payload}".encode(), hashlib.sha512).digest()
    return f"{head}.{payload}.{b64(signature)}"


class Serving:
    """A little HTTP server on loopback answering every GET with one body."""

    def __init__(self, body: bytes, content_type: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/auth/v1/.well-known/jwks.json"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_keys() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]]:
    """A JWKS endpoint (its own little HTTP server) publishing one EC and one RSA key."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    body = json.dumps(
        {
            "keys": [
                ec_jwk | {"kid": "ec-1", "alg": "ES256", "use": "sig"},
                rsa_jwk | {"kid": "rsa-1", "alg": "RS256"},
            ]
        }
    ).encode()
    server = Serving(body, "application/json")
    try:
        yield server.url, ec_key, rsa_key
    finally:
        server.close()


async def test_bad_tokens_are_401_and_write_nothing(
    start_api: StartApi, funded_user, db_url, jwks_keys
) -> None:
    jwks_url, ec_key, rsa_key = jwks_keys
    api = start_api(jwt_jwks_url=jwks_url)
    other_ec = ec.generate_private_key(ec.SECP256R1())
    public_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = claims(funded_user)
    confusion_head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "ec-1"}).encode())
    confusion_body = b64(json.dumps(good).encode())
    confusion_sig = hmac.new(
        public_pem, f"{confusion_head}.{confusion_body}".encode(), hashlib.sha256
    ).digest()
    bad_tokens = {
        "alg none": unsigned({"alg": "none", "typ": "JWT"}, good),
        "alg None (capitalised)": unsigned({"alg": "None"}, good),
        "HS256 with another secret": jwt.encode(good, "not-the-secret-but-long-enough-for-hs256", "HS256"),
        "HS256 signed with the JWKS public key (confusion)": ".".join(
            (confusion_head, confusion_body, b64(confusion_sig))
        ),
        "expired": jwt.encode(claims(funded_user, exp=int(time.time()) - 3600), JWT_SECRET, "HS256"),
        "wrong audience": jwt.encode(claims(funded_user, aud="anon"), JWT_SECRET, "HS256"),
        "no audience": jwt.encode(claims(funded_user, aud=None), JWT_SECRET, "HS256"),
        "no exp": jwt.encode(claims(funded_user, exp=None), JWT_SECRET, "HS256"),
        "no sub": jwt.encode(claims(funded_user, sub=None), JWT_SECRET, "HS256"),
        "sub is not a uuid": jwt.encode(claims(funded_user, sub="admin"), JWT_SECRET, "HS256"),
        # Python's UUID() reads these; PostgreSQL's uuid does not (auth.uid() would fail).
        "sub as a urn": jwt.encode(claims(funded_user, sub=f"urn:uuid:{funded_user}"), JWT_SECRET, "HS256"),
        "sub with odd hyphens": jwt.encode(
            claims(funded_user, sub="-".join(funded_user.hex)), JWT_SECRET, "HS256"
        ),
        "sub as a number": jwt.encode(claims(funded_user, sub=funded_user.int), JWT_SECRET, "HS256"),
        "ES256 from a key not in the JWKS": jwt.encode(good, other_ec, "ES256", headers={"kid": "ec-1"}),
        "ES256 with an unknown kid": jwt.encode(good, ec_key, "ES256", headers={"kid": "nope"}),
        "HS512 (not in the list)": hs512(good),
        "garbage": "not.a.jwt",
        "the service key as a user token": SERVICE_KEY,
    }
    before = await total_rows(db_url)
    async with httpx.AsyncClient(base_url=api.url) as client:
        for name, token in bad_tokens.items():
            for method, path in (("POST", "/api/jobs"), ("GET", "/api/me")):
                response = await client.request(
                    method,
                    path,
                    json=SENTIMENT if method == "POST" else None,
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 401, (name, response.text)
                assert response.headers["content-type"] == "application/problem+json", name
                assert response.headers["www-authenticate"] == "Bearer", name
                assert response.json()["status"] == 401
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
            response = await client.post("/api/jobs", json=SENTIMENT, headers=headers)
            assert response.status_code == 401, headers

        # The good ones, for contrast: ES256 and RS256 from the JWKS, HS256 with the secret.
        for token in (
            jwt.encode(good, ec_key, "ES256", headers={"kid": "ec-1"}),
            jwt.encode(good, rsa_key, "RS256", headers={"kid": "rsa-1"}),
            jwt.encode(good, JWT_SECRET, "HS256"),
        ):
            response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
    assert await total_rows(db_url) == before


async def test_a_jwks_out_of_reach_is_a_503_to_retry_not_a_401(
    start_api: StartApi, funded_user: uuid.UUID, db_url: str, jwks_keys
) -> None:
    """A JWKS that cannot be fetched says nothing of the token: 503 with Retry-After and no
    WWW-Authenticate (a 401 tells clients to sign their user out). A JWKS that answers without
    the token's key still makes it a 401."""
    jwks_url, _, rsa_key = jwks_keys
    token = jwt.encode(claims(funded_user), rsa_key, "RS256", headers={"kid": "rsa-1"})
    bearer = {"Authorization": f"Bearer {token}"}
    down = start_api(jwt_jwks_url=f"http://127.0.0.1:{free_port()}/auth/v1/.well-known/jwks.json")
    before = await total_rows(db_url)
    async with httpx.AsyncClient(base_url=down.url, timeout=30) as http:
        for response in (
            await http.get("/api/me", headers=bearer),
            await http.post("/api/jobs", json=SENTIMENT, headers=bearer),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
            assert "www-authenticate" not in response.headers
            assert response.json()["code"] == "auth_unavailable"
    assert await total_rows(db_url) == before

    # A proxy's error page where the keys should be: not the token's fault either.
    garbled = Serving(b"<html>502 Bad Gateway</html>", "text/html")
    try:
        page = start_api(jwt_jwks_url=garbled.url)
        async with httpx.AsyncClient(base_url=page.url, timeout=30) as http:
            response = await http.get("/api/me", headers=bearer)
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "auth_unavailable"
    finally:
        garbled.close()

    up = start_api(jwt_jwks_url=jwks_url)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown = jwt.encode(claims(funded_user), other, "RS256", headers={"kid": "rsa-2"})
    async with httpx.AsyncClient(base_url=up.url, timeout=30) as http:
        refused = await http.get("/api/me", headers={"Authorization": f"Bearer {unknown}"})
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/api/me", headers=bearer)).status_code == 200


async def test_rs256_is_refused_without_a_jwks(client, api, funded_user) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(funded_user), key, "RS256")
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "algorithm" in response.json()["detail"]


async def test_admin_needs_the_service_key_or_an_admin_claim(client, api, funded_user) -> None:
    grant = {"user_id": str(funded_user), "amount": 5}
    assert (await client.post("/api/admin/credits", json=grant)).status_code == 401
    user_token = await client.post("/api/admin/credits", json=grant, headers=api.auth(funded_user))
    assert user_token.status_code == 403 and user_token.headers["content-type"] == "application/problem+json"
    wrong_key = await client.post("/api/admin/credits", json=grant, headers={"apikey": "guess"})
    assert wrong_key.status_code == 401

    by_bearer = await client.post(
        "/api/admin/credits", json=grant, headers={"Authorization": f"Bearer {SERVICE_KEY}"}
    )
    assert by_bearer.status_code == 200 and by_bearer.json()["balance"] == 1005
    by_apikey = await client.post("/api/admin/credits", json=grant, headers={"apikey": SERVICE_KEY})
    assert by_apikey.json()["balance"] == 1010
    by_claim = await client.post("/api/admin/credits", json=grant, headers=api.auth(funded_user, admin=True))
    assert by_claim.json()["balance"] == 1015


async def test_time_claims_must_be_numbers(start_api: StartApi, funded_user: uuid.UUID) -> None:
    """RFC 7519's NumericDate: a string `exp`, `nbf` or `iat` is a 401, even one that reads as
    a number (PyJWT alone turns "9999999999" into a far-away expiry)."""
    api = start_api()
    far = str(int(time.time()) + 10**6)
    now = str(int(time.time()))
    async with httpx.AsyncClient(base_url=api.url) as http:
        for changes in ({"exp": far}, {"nbf": now}, {"iat": now}, {"iat": True}):
            token = jwt.encode(claims(funded_user, **changes), JWT_SECRET, "HS256")
            refused = await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 401, (changes, refused.text)
            assert "must be a number" in refused.json()["detail"], changes
        fine = jwt.encode(claims(funded_user, iat=int(now), nbf=int(now)), JWT_SECRET, "HS256")
        assert (await http.get("/api/me", headers={"Authorization": f"Bearer {fine}"})).status_code == 200


def test_short_secrets_are_refused_at_start(tmp_path: Path) -> None:
    """JWT_SECRET and SERVICE_ROLE_KEY under 32 bytes: the command refuses to start, with one
    line naming the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "SERVICE_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    for name, value in (("JWT_SECRET", "abc"), ("SERVICE_ROLE_KEY", "k")):
        done = subprocess.run(
            [sys.executable, "-m", "aijobs", "api"],
            env={**env, name: value},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "32 bytes" in lines[0], done.stderr
        assert value not in lines[0].split(name, 1)[1], "the secret is not echoed"
