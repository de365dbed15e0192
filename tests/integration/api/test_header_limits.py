"""The request head is bounded before the app runs: oversize or too many headers get 431 and
the process does not buffer them."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from tests.support.api_process import api_env, api_process

#: What the process may grow by while refusing the requests below (it would hold each
#: 8 MB header, three at once, without the bound).
GROWTH_BOUND = 16 * 1024 * 1024


def send_raw(url: str, head: bytes, header_bytes: int = 0) -> bytes:
    """Send a request head (plus one `X-Big` header of `header_bytes`), return the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        try:
            sock.sendall(head)
            chunk = b"a" * 65536
            sent = 0
            if header_bytes:
                sock.sendall(b"X-Big: ")
                while sent < header_bytes:
                    sock.sendall(chunk)
                    sent += len(chunk)
                sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: read what it said
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
        return answer


def test_oversize_and_numerous_headers_are_431_and_memory_stays_bounded(db_url: str, tmp_path: Path) -> None:
    with api_process(api_env(db_url), tmp_path / "api.log") as api:
        process = psutil.Process(api.proc.pid)
        before = process.memory_info().rss
        for _ in range(3):
            answer = send_raw(api.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", header_bytes=8 * 1024 * 1024)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        answer = send_raw(api.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"application/problem+json" in answer
        assert process.memory_info().rss - before < GROWTH_BOUND
        # An ordinary request still passes.
        ok = send_raw(api.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]
