"""Where a webhook may be sent.

A URL is refused at registration with the reason (its form, read both by urllib and by the
httpx that sends deliveries, or an address that is loopback, private, link-local or otherwise
not public), and every delivery checks the addresses again when it connects, then connects
to the checked address itself: a name that resolves to a public address at registration and
to an internal one later (DNS rebinding) is refused too.
`WEBHOOK_ALLOW_PRIVATE=true` lifts the address rule (tests, receivers on the deployment's
own network); the rules on a URL's form always hold. A name the resolver says does not exist
is refused; one it could not look up just now (a timeout, a temporary failure) raises
`ResolverUnavailable`, since that says nothing about the URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from aijobs import __version__

MAX_URL_LENGTH = 2048
#: How long a name may take to resolve, at registration and per connection.
RESOLVE_SECONDS = 5.0
#: getaddrinfo's answers that the name has no address, as opposed to the lookup failing
#: (EAI_AGAIN, EAI_FAIL, ...). EAI_NODATA and EAI_ADDRFAMILY are glibc's, not everywhere.
_NO_SUCH_NAME = frozenset(
    code
    for code in (
        socket.EAI_NONAME,
        getattr(socket, "EAI_NODATA", None),
        getattr(socket, "EAI_ADDRFAMILY", None),
    )
    if code is not None
)


class ResolverUnavailable(Exception):
    """The host could not be looked up now; trying again later may work."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} could not be looked up")
        self.host = host


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook target by its form alone, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if not url.isascii():
        return "must be ASCII (write an international host name in its xn-- form)"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "holds spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http"):
        return "must start with https:// or http://"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "may not carry a user name or password (the signature authenticates deliveries)"
    if parts.fragment:
        return "may not have a #fragment"
    # Deliveries are sent by httpx, whose parser is not urllib's: `[::1]abc` passes urlsplit
    # and fails only when a request is built, so one is built here the way a delivery is.
    try:
        sent = httpx.Request("POST", url).url
    except (httpx.InvalidURL, ValueError) as exc:  # a bad xn-- label raises IDNAError
        return f"is not a valid URL ({exc})"
    if not sent.raw_host:
        return "has no host"
    if sent.port == 0:
        return "has port 0, which nothing can be reached on"
    return None


def destination(url: str) -> tuple[str, int]:
    """The host and port a delivery to `url` (which `url_problem` accepts) connects to."""
    sent = httpx.URL(url)
    # raw_host: the ASCII form the connection resolves (`host` decodes xn-- labels).
    return sent.raw_host.decode("ascii"), sent.port or (443 if sent.scheme == "https" else 80)


def address_problem(address: str) -> str | None:
    """Why a delivery may not connect to `address` (an IP literal), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "the unspecified address (this host)"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "not a public address"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_SECONDS):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def target_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` may not be registered as a webhook endpoint, or None."""
    problem = url_problem(url)
    if problem is not None or allow_private:
        return problem
    # What the deliverer will connect to, checked as it will be: not urllib's reading of it.
    host, port = destination(url)
    try:
        addresses = await resolve(host, port)
    except UnicodeError:
        # The idna codec refuses an empty label or one over 63 characters (`a..b`).
        return f"has a host that is not a valid name ({host})"
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_NAME:
            return f"has a host that does not resolve ({host})"
        raise ResolverUnavailable(host) from exc
    except (OSError, TimeoutError) as exc:
        raise ResolverUnavailable(host) from exc
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            return f"resolves to {address}, {problem}"
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses `address_problem` accepts, checked at connect time."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            addresses = await resolve(host, port)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                raise httpcore.ConnectError(f"refused: {host} resolves to {address}, {problem}")
        # The checked address, not the name again: a second lookup could answer otherwise.
        # TLS still verifies the certificate against the URL's host name.
        return await self._inner.connect_tcp(addresses[0], port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def delivery_client(*, allow_private: bool, timeout: float) -> httpx.AsyncClient:
    """The HTTP client deliveries use: no redirects, no proxies from the environment, no
    retries of its own, every connection through `GuardedBackend`."""
    transport = httpx.AsyncHTTPTransport(retries=0)
    # httpx takes no network backend of its own, so its pool is replaced by one that has it.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        retries=0,
        network_backend=GuardedBackend(allow_private=allow_private),
    )
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        headers={"user-agent": f"aijobs-webhooks/{__version__}"},
    )
