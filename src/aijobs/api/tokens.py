"""Minting development tokens, shaped like Supabase's access tokens.

Used by `aijobs token`, by `aijobs dev` and by the /api-test page's dev button. Only HS256
with JWT_SECRET: production tokens come from Supabase Auth (or whoever holds the keys).
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import jwt


def mint_token(
    secret: str,
    user_id: UUID,
    *,
    ttl_seconds: int = 3600,
    admin: bool = False,
    audience: str = "authenticated",
    issuer: str | None = None,
) -> str:
    """An HS256 JWT for `user_id`, valid `ttl_seconds` from now."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "aud": audience,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_seconds,
        "app_metadata": {"role": "admin"} if admin else {},
    }
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
