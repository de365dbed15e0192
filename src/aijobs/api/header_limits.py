"""Bounds on a request's head (request line and headers), enforced before the app sees it.

uvicorn's httptools parser keeps no limit of its own: a client could send a header of any
size and the process buffered all of it before authentication ran (three 100 MB headers
took the API from 83 MB to 680 MB). `BoundedHttpToolsProtocol` counts the bytes of each
request's head as they arrive and answers 431 once it passes `MAX_HEAD_BYTES` or
`MAX_HEADERS` fields, then closes the connection; without httptools, h11's own bound on an
incomplete event applies.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The whole head: request line plus every header. Browsers send a few KiB; big JWTs and
#: cookies stay well under this.
MAX_HEAD_BYTES = 64 * 1024
#: Header fields per request.
MAX_HEADERS = 100

_BODY = json.dumps(
    {
        "type": "about:blank",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": f"the request head may hold at most {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} header fields",
    }
).encode()
_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head (431 past it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            room = MAX_HEAD_BYTES - self._head_bytes
            if len(data) > room:
                # Feed only what the bound allows: if the head ends in it, the rest (a body,
                # the next pipelined request) is fed as usual; if not, the head is too large.
                self._head_bytes += room
                super().data_received(data[:room])
                if self._refused:
                    return
                if self._in_head:
                    self._refuse()
                    return
                self.data_received(data[room:])
                return
            self._head_bytes += len(data)
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            self._refuse()
            # Stops the parser; uvicorn would answer its own 400, which _refuse pre-empts.
            raise ValueError("too many header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(_RESPONSE)
            self.transport.close()
