"""`/api-test`: a server-rendered page to try the API by hand (no build step, no CDN).

The page signs in with a pasted token (or, in dev mode only, a token minted for the demo
user), creates jobs and follows them live over SSE using fetch streaming, so the token
travels in the Authorization header and never in a URL.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from aijobs.api.models import DevToken
from aijobs.api.problems import ProblemError
from aijobs.api.state import ApiState, get_state
from aijobs.api.tokens import mint_token
from aijobs.jobs import registry

router = APIRouter(include_in_schema=False)
#: Mounted only in dev mode: anyone who can reach a dev server may act as its demo user.
dev_router = APIRouter(tags=["dev"])
templates = Jinja2Templates(directory=str(resources.files("aijobs.api") / "templates"))
DEV_TOKEN_TTL = 3600


@router.get("/api-test", response_class=HTMLResponse)
async def api_test(request: Request, state: Annotated[ApiState, Depends(get_state)]) -> HTMLResponse:
    types = [
        {
            "name": jt.name,
            "cost": jt.cost,
            "description": jt.description,
            "example": json.dumps(jt.example if jt.example is not None else {}, indent=2),
        }
        for jt in registry().values()
    ]
    return templates.TemplateResponse(request, "api_test.html", {"job_types": types, "dev": state.dev})


@dev_router.post(
    "/api/dev/token", response_model=DevToken, summary="Dev mode only: a token for the demo user"
)
async def dev_token(state: Annotated[ApiState, Depends(get_state)]) -> DevToken:
    if not state.dev or state.dev_user is None or state.settings.jwt_secret is None:
        raise ProblemError(404, "not available", code="not_found")
    token = mint_token(
        state.settings.jwt_secret.get_secret_value(),
        state.dev_user,
        ttl_seconds=DEV_TOKEN_TTL,
        audience=state.settings.jwt_audience,
        issuer=state.settings.jwt_issuer,
    )
    return DevToken(token=token, user_id=state.dev_user, expires_in=DEV_TOKEN_TTL)
