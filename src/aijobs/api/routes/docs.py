"""`/docs` (Swagger UI), served with no network: the assets come from the fastapi-offline
package and are mounted at `/docs-assets`, not fetched from a CDN, so the page works on an
air-gapped machine and tells no third party about the visit. (No /redoc: its bundle fetches
its maker's logo from their CDN.)"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
ASSETS = "/docs-assets"
TITLE = "aijobs API"


def assets() -> StaticFiles:
    return StaticFiles(directory=str(resources.files("fastapi_offline") / "static"))


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} · docs",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
        # The default validator badge calls an outside service with the spec's URL.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
    )
