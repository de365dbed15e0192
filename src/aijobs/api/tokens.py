"""Minting development tokens, shaped like Supabase's access tokens.

Used by `aijobs token`, by `aijobs dev` and by the /api-test page's dev button. Only HS256
with JWT_SECRET (or the secret `aijobs dev` keeps under ./.aijobs when it is unset):
production tokens come from Supabase Auth (or whoever holds the keys).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
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


#: Where `aijobs dev` keeps the JWT secret it generates when JWT_SECRET is unset, so that
#: its tokens outlive a restart and `aijobs token` (run in the same folder) signs with it.
DEV_SECRET_FILE = Path(".aijobs") / "dev-jwt-secret"


def dev_secret(path: Path = DEV_SECRET_FILE) -> tuple[str, Path, bool]:
    """The dev secret (created on first use, mode 0600): (secret, path, created)."""
    existing = read_dev_secret(path)
    if existing is not None:
        return existing, path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `aijobs dev` wrote it first: use theirs
        return dev_secret(path)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret, path, True


def read_dev_secret(path: Path = DEV_SECRET_FILE) -> str | None:
    """The dev secret if `aijobs dev` created one here (its mode tightened to 0600), else None."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return text or None
