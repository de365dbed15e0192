"""The image's HEALTHCHECK: is the aijobs process of this container serving?

`aijobs api` answers GET /healthz on API_PORT; `aijobs worker` with METRICS_PORT answers
/metrics from a thread of its own (alive, not a proof that it claims). A worker without a
metrics port, or any other command, is healthy while it runs. Only the standard library:
it runs in the image's Python, not as part of aijobs.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def command() -> list[str]:
    """The arguments of the aijobs process (tini is PID 1, aijobs its child)."""
    for proc in sorted((p for p in Path("/proc").iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args if a]
        if any(Path(w).name == "aijobs" for w in words[:2]) and "tini" not in words[0]:
            return words
    return []


def url() -> str | None:
    words = command()
    if "api" in words:
        return f"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/healthz"
    if "worker" in words and os.environ.get("METRICS_PORT"):
        return f"http://127.0.0.1:{os.environ['METRICS_PORT']}/metrics"
    return None


def main() -> int:
    target = url()
    if target is None:
        return 0
    try:
        with urllib.request.urlopen(target, timeout=3) as response:  # noqa: S310 - a fixed local URL
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {target}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
