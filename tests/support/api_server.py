"""The API served over real HTTP for tests: uvicorn on 127.0.0.1, a random port, its own thread.

The server runs its own event loop (as it would in production), so tests talk to it only
through sockets, never by calling the app in-process.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import uvicorn
from fastapi import FastAPI

from aijobs.api.app import create_app
from aijobs.api.tokens import mint_token
from aijobs.config import Settings

JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
SERVICE_KEY = "test-service-role-key"


@dataclass
class ApiServer:
    settings: Settings
    dev_user: UUID | None = None
    url: str = ""
    app: FastAPI | None = field(default=None, repr=False)
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> ApiServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = self.app = create_app(self.settings, dev_user=self.dev_user)
        config = uvicorn.Config(
            app, log_level="warning", ws="none", lifespan="on", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"api-{port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)

    def token(self, user: UUID, **kwargs: Any) -> str:
        return mint_token(JWT_SECRET, user, **kwargs)

    def auth(self, user: UUID, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, **kwargs)}"}


def api_settings(settings: Settings, **overrides: Any) -> Settings:
    from pydantic import SecretStr

    values: dict[str, Any] = {
        "jwt_secret": SecretStr(JWT_SECRET),
        "service_role_key": SecretStr(SERVICE_KEY),
        "cors_origins": "chrome-extension://abcdefghijklmnopabcdefghijklmnop,https://app.example.com",
    }
    values.update(overrides)
    return settings.model_copy(update=values)
