"""`aijobs fake-openai`: the fake OpenAI-compatible server, for demos and benchmarks without a key."""

from __future__ import annotations

import typer

from aijobs.cli.app import app


@app.command("fake-openai")
def fake_openai(
    port: int = typer.Option(8765, "--port", min=0, max=65535),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="Added to every answer."),
    rpm: int = typer.Option(None, "--rpm", min=1, help="Answer 429 (retry-after-ms) beyond this many."),
    window_seconds: float = typer.Option(60.0, "--window-seconds", min=0.01, help="The --rpm window."),
    fail_rate: float = typer.Option(0.0, "--fail-rate", min=0, max=1, help="Fraction answered 500."),
    api_key: str = typer.Option(None, "--api-key", help="Require this bearer key (401 otherwise)."),
    stream_interval_ms: float = typer.Option(
        0.0, "--stream-interval-ms", min=0, help="Between the words of a streamed answer."
    ),
    models: str = typer.Option(
        None, "--models", help="Comma-separated models it serves (404 model_not_found for others)."
    ),
) -> None:
    """Serve /v1/responses and /v1/chat/completions on 127.0.0.1 (point OPENAI_BASE_URL here)."""
    from aijobs.providers.fake_openai import FakeOpenAI

    fake = FakeOpenAI(
        latency_ms=latency_ms,
        rpm=rpm,
        window_seconds=window_seconds,
        fail_rate=fail_rate,
        api_key=api_key,
        port=port,
        stream_interval_ms=stream_interval_ms,
        models=set(models.split(",")) if models else None,
    )
    typer.echo(
        f"fake OpenAI server on http://127.0.0.1:{port}/v1 — OPENAI_BASE_URL=http://127.0.0.1:{port}/v1"
    )
    fake.serve_forever()
