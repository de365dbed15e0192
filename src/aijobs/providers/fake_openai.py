"""A small fake OpenAI-compatible server, for tests, benchmarks and demos without a key.

Serves `POST /v1/responses` and `POST /v1/chat/completions` on 127.0.0.1 with answers that fit
the request's JSON schema, usage figures, `x-request-id` and `x-ratelimit-*` headers — so the
real `openai` SDK talks to it over real HTTP (respx cannot intercept openai 3.x, which moved to
httpx2). Behaviour is scriptable per test: `script(Step.rate_limited(200), Step.error(500), …)`
queues what the next requests get (status, headers, delay, hang, incomplete, content filter,
refusal); with an empty script every request succeeds. A request with `"stream": true` gets
the same answer streamed (Responses' events, Chat's chunks), a piece every `stream_interval`.
Every request is recorded (`requests`) for assertions.

In-process: `with FakeOpenAI() as fake: … fake.base_url …` (a thread, random port).
Standalone: `python -m aijobs.providers.fake_openai --port 8765 --latency-ms 200 [--rpm N]`
or `aijobs fake-openai --port 8765`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aijobs.providers import fake_openai_bodies as bodies


@dataclass(frozen=True)
class Step:
    """What one request gets. Build with the class methods; the default is a normal answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    incomplete: bool = False
    #: Why an incomplete answer stopped: Responses' `incomplete_details.reason`; on Chat,
    #: "content_filter" is that finish_reason and anything else is "length".
    incomplete_reason: str = "max_output_tokens"
    refusal: str | None = None
    text: str | None = None
    code: str | None = None
    message: str | None = None
    #: Seconds between two pieces of a streamed answer (added to the server's own interval).
    stream_interval: float = 0.0

    @classmethod
    def ok(cls, *, delay: float = 0.0, text: str | None = None, stream_interval: float = 0.0) -> Step:
        return cls(delay=delay, text=text, stream_interval=stream_interval)

    @classmethod
    def rate_limited(cls, retry_after_ms: int | None = 200, **headers: str) -> Step:
        """429 with `retry-after-ms` (and any extra headers, e.g. retry_after='2')."""
        h = {k.replace("_", "-"): v for k, v in headers.items()}
        if retry_after_ms is not None:
            h["retry-after-ms"] = str(retry_after_ms)
        return cls(status=429, headers=h)

    @classmethod
    def error(cls, status: int, *, code: str | None = None, message: str | None = None) -> Step:
        return cls(status=status, code=code, message=message)

    @classmethod
    def hanging(cls) -> Step:
        """Never answer (until the server stops): for client timeouts."""
        return cls(hang=True)

    @classmethod
    def truncated(cls) -> Step:
        """An `incomplete` answer (Responses) / `finish_reason: length` (Chat Completions)."""
        return cls(incomplete=True)

    @classmethod
    def filtered(cls) -> Step:
        """Stopped by the content filter: `incomplete` for `content_filter` (Responses) /
        `finish_reason: content_filter` (Chat Completions)."""
        return cls(incomplete=True, incomplete_reason="content_filter")

    @classmethod
    def refused(cls, refusal: str = "I can't help with that.") -> Step:
        return cls(refusal=refusal)


def _ascii_json(content: Any) -> str:
    return json.dumps(content, allow_nan=False, separators=(",", ":"))


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (`\\u00e9`), as many servers send it. A
    scripted answer may then hold any code point, a lone surrogate included, which a UTF-8 body
    cannot carry raw but a JSON escape can."""

    def render(self, content: Any) -> bytes:
        return _ascii_json(content).encode("ascii")


@dataclass(frozen=True)
class Recorded:
    """One request as received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.time() on arrival
    status: int


class FakeOpenAI:
    """The fake server: script it, run it, read what it received."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        rpm: int | None = None,
        window_seconds: float = 60.0,
        fail_rate: float = 0.0,
        api_key: str | None = None,
        port: int = 0,
        stream_interval_ms: float = 0.0,
        models: set[str] | None = None,
    ) -> None:
        self.latency = latency_ms / 1000.0
        #: The models it serves: a request for another gets OpenAI's 404 (None: any model).
        #: A test may change it (and `api_key`) while the server runs, to fix what it broke.
        self.models = models
        self.stream_interval = stream_interval_ms / 1000.0
        self.rpm = rpm
        self.window = window_seconds
        self.fail_rate = fail_rate
        self.api_key = api_key
        self.port = port
        self._lock = threading.Lock()
        self._script: deque[Step] = deque()
        self._log: list[Recorded] = []
        #: time.time() when each streamed answer's first piece of text was sent (benchmarks).
        self.first_pieces: list[float] = []
        self._recent: deque[float] = deque()
        self._closing = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- scripting and inspection ------------------------------------------------------
    def script(self, *steps: Step) -> None:
        """Queue what the next requests get, in order (shared by both endpoints)."""
        with self._lock:
            self._script.extend(steps)

    def pending_steps(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._log)

    def clear(self) -> None:
        with self._lock:
            self._log.clear()
            self._script.clear()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- lifecycle ----------------------------------------------------------------------
    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            access_log=False,
            timeout_graceful_shutdown=1,
        )

    def start(self) -> FakeOpenAI:
        """Serve from a background thread on a random free port (`base_url` says where)."""
        self._server = uvicorn.Server(self._config())
        self._thread = threading.Thread(target=self._server.run, name="fake-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def serve_forever(self) -> None:
        """Run in the foreground (the standalone command)."""
        uvicorn.Server(self._config()).run()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers -----------------------------------------------------------------------
    async def _responses(self, request: Request) -> Response:
        return await self._handle(request, bodies.responses_body)

    async def _chat(self, request: Request) -> Response:
        return await self._handle(request, bodies.chat_body)

    async def _models(self, _request: Request) -> Response:
        models = ["gpt-5-nano", "gpt-5-mini", "gpt-5", "gpt-4o-mini"]
        return JSONResponse(
            {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in models]}
        )

    async def _handle(self, request: Request, build: Callable[..., dict[str, Any]]) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        step, limited = self._next_step()
        status = 400 if not isinstance(body, dict) else (429 if limited is not None else step.status)
        model = body.get("model") if isinstance(body, dict) else None
        wrong_key = bool(self.api_key) and request.headers.get("authorization") != f"Bearer {self.api_key}"
        unknown_model = self.models is not None and model not in self.models
        status = 401 if wrong_key else 404 if unknown_model else status
        self._record(request, body if isinstance(body, dict) else {}, status)
        headers = {"x-request-id": bodies.new_id("req_"), **self._rate_headers(), **step.headers}
        if wrong_key:
            return JSONResponse(bodies.error_body(401), status_code=401, headers=headers)
        if unknown_model:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return JSONResponse(bodies.error_body(404, "model_not_found", message), 404, headers)
        if self.latency or step.delay:
            await asyncio.sleep(self.latency + step.delay)
        if step.hang:
            # `stop()` runs on another thread: a flag polled here, not an asyncio.Event.
            while not self._closing:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return Response(status_code=503)
        if not isinstance(body, dict):
            return JSONResponse(bodies.error_body(400, message="body is not a JSON object"), 400, headers)
        if limited is not None:
            headers["retry-after-ms"] = str(int(limited * 1000))
            return JSONResponse(bodies.error_body(429), status_code=429, headers=headers)
        if status != 200:
            return JSONResponse(bodies.error_body(status, step.code, step.message), status, headers)
        payload = build(
            body,
            incomplete=step.incomplete,
            incomplete_reason=step.incomplete_reason,
            refusal=step.refusal,
            text=step.text,
        )
        headers["openai-processing-ms"] = str(int((self.latency + step.delay) * 1000))
        if body.get("stream"):
            interval = self.stream_interval + step.stream_interval
            return StreamingResponse(
                self._stream(body, payload, interval), media_type="text/event-stream", headers=headers
            )
        return AsciiJSONResponse(payload, headers=headers)

    async def _stream(
        self, body: dict[str, Any], final: dict[str, Any], interval: float
    ) -> AsyncIterator[bytes]:
        """The answer as the API streams it: Responses' typed events, or Chat's chunks and
        `[DONE]`; a piece of text every `interval` seconds."""
        first = True
        if final.get("object") == "response":
            for event in bodies.responses_stream(final):
                if event["type"].endswith(".delta"):
                    if interval:
                        await asyncio.sleep(interval)
                    if first:
                        first = False
                        self.first_pieces.append(time.time())
                yield f"event: {event['type']}\ndata: {_ascii_json(event)}\n\n".encode()
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for chunk in bodies.chat_stream(final, include_usage=include_usage):
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                if interval:
                    await asyncio.sleep(interval)
                if first:
                    first = False
                    self.first_pieces.append(time.time())
            yield f"data: {_ascii_json(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    def _next_step(self) -> tuple[Step, float | None]:
        """The scripted step (else a default or a random fault), and the server's own 429."""
        with self._lock:
            step = self._script.popleft() if self._script else None
            limited = None
            if self.rpm is not None:
                now = time.monotonic()
                while self._recent and self._recent[0] <= now - self.window:
                    self._recent.popleft()
                if len(self._recent) >= self.rpm:
                    limited = self._recent[0] + self.window - now
                else:
                    self._recent.append(now)
        if step is None:
            step = Step.error(500) if self.fail_rate and random.random() < self.fail_rate else Step()
        return step, limited

    def _rate_headers(self) -> dict[str, str]:
        if self.rpm is None:
            return {"x-ratelimit-limit-requests": "30000", "x-ratelimit-remaining-requests": "29999"}
        with self._lock:
            remaining = max(self.rpm - len(self._recent), 0)
            reset = (self._recent[0] + self.window - time.monotonic()) if self._recent else 0.0
        return {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{max(reset, 0) * 1000:.0f}ms",
        }

    def _record(self, request: Request, body: dict[str, Any], status: int) -> None:
        entry = Recorded(
            path=request.url.path,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            at=time.time(),
            status=status,
        )
        with self._lock:
            self._log.append(entry)


@contextlib.contextmanager
def running(**options: Any) -> Iterator[FakeOpenAI]:
    """`with running(latency_ms=50) as fake:` — a started server, stopped on exit."""
    fake = FakeOpenAI(**options)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--rpm", type=int, default=None, help="answer 429 beyond this many requests/window")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="the --rpm window")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests answered 500")
    parser.add_argument("--api-key", default=None, help="require this bearer key (401 otherwise)")
    parser.add_argument("--stream-interval-ms", type=float, default=0.0, help="between streamed pieces")
    parser.add_argument(
        "--models", default=None, help="comma-separated models it serves (404 model_not_found for others)"
    )
    args = parser.parse_args(argv)
    fake = FakeOpenAI(
        latency_ms=args.latency_ms,
        rpm=args.rpm,
        window_seconds=args.window_seconds,
        fail_rate=args.fail_rate,
        api_key=args.api_key,
        port=args.port,
        stream_interval_ms=args.stream_interval_ms,
        models=set(args.models.split(",")) if args.models else None,
    )
    print(f"fake OpenAI server on http://127.0.0.1:{args.port}/v1 (OPENAI_BASE_URL)", flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
