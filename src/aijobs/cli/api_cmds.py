"""`aijobs api` (serve the HTTP API), `aijobs token` (mint a development token) and `aijobs openapi`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from uuid import UUID

import typer

from aijobs import eventloop
from aijobs.api.tokens import DEV_SECRET_FILE, mint_token, read_dev_secret
from aijobs.cli.app import app, database, listen_or_exit, require_migrated, settings_or_exit

# FastAPI and uvicorn are imported by the commands that serve, not at import: every other
# `aijobs` command starts without them.


@app.command("api")
def api(
    host: str = typer.Option(None, "--host", help="API_HOST (default 127.0.0.1)"),
    port: int = typer.Option(None, "--port", min=0, max=65535, help="API_PORT (default 8000)"),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="uvicorn worker processes"),
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs, the /api-test page)."""
    import uvicorn

    from aijobs.api.app import create_app
    from aijobs.api.header_limits import BoundedHttpToolsProtocol
    from aijobs.api.server import server_config

    settings = settings_or_exit(api_host=host, api_port=port)
    # Bound before anything starts, so a port in use is one line and exit 1.
    with listen_or_exit(settings.api_host, settings.api_port) as sock, database(settings) as url:
        require_migrated(url)
        if settings.jwt_secret is None and settings.jwt_jwks_url is None:
            typer.echo(
                "warning: neither JWT_SECRET nor JWT_JWKS_URL is set: no user token will be accepted",
                err=True,
            )
        # The port bound, not the one asked for: `--port 0` takes any free one.
        bound = sock.getsockname()[1]
        typer.echo(f"aijobs API on http://{settings.api_host}:{bound}  (try /api-test, /docs)")
        if workers == 1:
            config = server_config(
                create_app(settings.model_copy(update={"database_url": url})),
                settings.api_host,
                settings.api_port,
                settings.log_level,
            )
            eventloop.run(uvicorn.Server(config).serve(sockets=[sock]), settings.event_loop)
            return
        # Several processes: each builds its app from the environment, so pass the URL down,
        # and a fresh directory for prometheus_client's multiprocess mode, so that /metrics
        # sums every process's counters whichever process answers (aijobs.monitoring.metrics).
        # The children import prometheus_client after this is set; the directory goes with
        # the run, so no counter of an earlier run is ever summed in.
        os.environ["DATABASE_URL"] = url
        with tempfile.TemporaryDirectory(prefix="aijobs-metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            # uvicorn binds for its worker processes itself: a socket passed by descriptor
            # is taken for a Unix one, and asyncio then leaves TCP_NODELAY off. The port was
            # checked above; it is given back just before.
            sock.close()
            uvicorn.run(
                "aijobs.api.server:app_from_env",
                factory=True,
                loop=settings.event_loop,
                host=settings.api_host,
                port=bound,
                workers=workers,
                log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=5,
                http=BoundedHttpToolsProtocol,
            )


@app.command("token")
def token(
    user: UUID = typer.Option(..., "--user", help="The user id (uuid) the token signs in as."),
    admin: bool = typer.Option(False, "--admin", help="Add app_metadata.role = admin."),
    ttl: int = typer.Option(3600, "--ttl", min=1, max=30 * 86400, help="Seconds until it expires."),
) -> None:
    """Mint a development token (HS256 with JWT_SECRET, else `aijobs dev`'s secret), printed alone
    for $(aijobs token ...)."""
    settings = settings_or_exit()
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else read_dev_secret()
    if secret is None:
        typer.echo(
            "error: JWT_SECRET is not set, and no `aijobs dev` ran here to create its dev secret"
            f" ({DEV_SECRET_FILE}); set JWT_SECRET in .env.local",
            err=True,
        )
        raise typer.Exit(2)
    if settings.jwt_secret is None:
        typer.echo(
            f"JWT_SECRET is not set: signing with `aijobs dev`'s secret in {DEV_SECRET_FILE}", err=True
        )
    typer.echo(
        mint_token(
            secret,
            user,
            ttl_seconds=ttl,
            admin=admin,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    )


@app.command("openapi")
def openapi_spec(
    out: Path | None = typer.Option(None, "--out", help="Write here instead of standard output."),
) -> None:
    """Print the API's OpenAPI spec (what /openapi.json serves), with no database or server."""
    from aijobs.api.openapi import dump, spec

    text = dump(spec())
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
