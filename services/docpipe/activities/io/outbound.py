"""The one path every outbound HTTP request of a worker takes: vet, pin, connect.

Downloads (every redirect hop), webhooks and the LLM endpoint all send through
an :class:`OutboundClient`. Its transport, for each request, before anything
touches the network:

1. checks the host against the request's :class:`Route` (its
   :class:`~docpipe.activities.io.netguard.NetPolicy`: host lists, address
   classes, allowed networks and their ports);
2. resolves the name once and vets every answer (:meth:`NetPolicy.pick`);
3. sends the request over a connection to that vetted address -- Host header
   and TLS SNI/certificate checks keep the name -- so a DNS answer that changes
   afterwards (rebinding) is never used.

A request without a route gets the strict default (public addresses only), and
the network backend refuses any host that is not an address: nothing can
connect without having been vetted.

**Why a pooled connection cannot outlive its vetting.** httpcore reuses a
keep-alive connection for any request to the same (scheme, host, port). Keyed
by the name, a connection opened to an address vetted under one route (or
before the name moved) would serve a later request whose own vetting picked a
different address -- e.g. a webhook's connection to an internal host reused by
a download of the same name that now resolves to a public one. Here the pool
key is (scheme, *vetted address*, port, *server name*): a connection is reused
only by a request whose own vetting just produced that very address for that
very name. The address in the key is what pins reuse; the name in the key keeps
TLS honest (a connection whose certificate was checked for one name never
carries another name's requests). One shared pool keeps the global connection
limits, unlike separate clients per purpose, which would also still reuse
across a DNS change.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from docpipe.activities.io.netguard import NetPolicy, normalize_host, parse_address
from docpipe.errors import DocumentError, TransientError
from docpipe.models import Stage
from docpipe.redact import RedactUrls, redact_url

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: the system resolver, or a stub in tests."""

ROUTE = "docpipe.route"
"""Request extension: the :class:`Route` this request is vetted by."""
PIN = "docpipe.pin"
"""Request and response extension: the :class:`Pin` the request was connected to."""

# httpx logs each request's URL (seen with LOG_LEVEL=DEBUG): never with its credentials.
logging.getLogger("httpx").addFilter(RedactUrls())

# getaddrinfo answers meaning "this name does not exist" (as opposed to
# EAI_AGAIN, a resolver that is temporarily unreachable).
_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from getaddrinfo (asyncio's, in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Route:
    """How one request is vetted: the policy of its purpose, and how names resolve."""

    policy: NetPolicy = field(default_factory=NetPolicy)
    resolver: Resolver = system_resolver


@dataclass(frozen=True)
class Pin:
    """Where a vetted request connects: ``address`` is the one answer that passed."""

    host: str
    port: int
    address: str


async def vet(url: httpx.URL, route: Route) -> Pin:
    """The address ``url`` may be connected to under ``route``, or a refusal.

    Raises :class:`DocumentError` (stage download; callers of other purposes
    re-word it) when the policy refuses the host or an answer, or the name does
    not exist; :class:`TransientError` when the resolver is unreachable.
    """
    if url.scheme not in {"http", "https"}:
        raise DocumentError(Stage.DOWNLOAD, f"unsupported URL scheme in {redact_url(str(url))!r}")
    host = normalize_host(url.raw_host.decode("ascii"))
    if not host:
        raise DocumentError(Stage.DOWNLOAD, f"URL {redact_url(str(url))!r} names no host")
    route.policy.check_host(host)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        parse_address(host)
        answers: Sequence[str] = [host]  # a literal address: nothing to resolve
    except ValueError:
        try:
            answers = await route.resolver(host, port)
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_HOST:
                raise DocumentError(Stage.DOWNLOAD, f"host {host!r} does not exist") from exc
            raise TransientError(f"cannot resolve host {host!r}: {exc}") from exc
    return Pin(host, port, route.policy.pick(host, answers, port))


class _PinnedOrigin(httpcore.Origin):
    """A pool key that includes the vetted address and the server name."""

    def __init__(self, scheme: bytes, address: bytes, port: int, server_name: str) -> None:
        super().__init__(scheme, address, port)
        self.server_name = server_name

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, _PinnedOrigin)
            and super().__eq__(other)
            and self.server_name == other.server_name
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like httpcore's Origin


class _PinnedURL(httpcore.URL):
    """The request's URL with the vetted address as its host (the connection
    target); the request line and Host header still carry the name."""

    def __init__(self, url: httpcore.URL, pin: Pin) -> None:
        super().__init__(
            scheme=url.scheme, host=pin.address.encode("ascii"), port=pin.port, target=url.target
        )
        self.server_name = pin.host

    @property
    def origin(self) -> httpcore.Origin:
        return _PinnedOrigin(self.scheme, self.host, self.port or 0, self.server_name)


class _PinnedPool(httpcore.AsyncConnectionPool):
    """Connects each request to its pin and pools connections by (address, name)."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        pin = request.extensions.get(PIN)
        if not isinstance(pin, Pin):  # only the vetting transport sets it: fail closed
            raise httpcore.ConnectError("refusing to connect: the request was not vetted")
        request.url = _PinnedURL(request.url, pin)
        request.extensions = {**request.extensions, "sni_hostname": pin.host}
        return await super().handle_async_request(request)


class _AddressOnlyBackend(httpcore.AsyncNetworkBackend):
    """Connects to literal addresses only: a host name here would mean a connection
    that skipped vetting (httpcore would resolve it afresh), so it is refused."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, **options: Any
    ) -> httpcore.AsyncNetworkStream:
        """``options`` (timeout, local address, socket options) go to the inner
        backend as httpcore passed them."""
        try:
            parse_address(host)
        except ValueError:
            raise httpcore.ConnectError(f"refusing to connect to unvetted host {host!r}") from None
        return await self._inner.connect_tcp(host, port, **options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound requests do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class VettingTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with every request vetted and pinned (see the module doc)."""

    def __init__(
        self,
        *,
        default_route: Route | None = None,
        limits: httpx.Limits | None = None,
        verify: bool = True,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        limits = limits if limits is not None else httpx.Limits()
        super().__init__(limits=limits, verify=verify, trust_env=False)
        self.default_route = default_route if default_route is not None else Route()
        self._pool = _PinnedPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_AddressOnlyBackend(network_backend),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = request.extensions.get(ROUTE, self.default_route)
        if not isinstance(route, Route):
            raise TypeError(f"the {ROUTE} extension must be a Route, not {type(route).__name__}")
        pin = await vet(request.url, route)
        request.extensions = {**request.extensions, PIN: pin}
        response = await super().handle_async_request(request)
        response.extensions = {**response.extensions, PIN: pin}
        return response


class OutboundClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose every request goes through :class:`VettingTransport`.

    Pass ``extensions={ROUTE: route}`` to vet a request by its purpose's policy;
    without it the strict default applies. Proxies from the environment are not
    used (``trust_env=False``): a proxy would make the connection, and the
    vetted address could not be pinned. Redirects are not followed here: a
    caller that follows them sends each hop as its own (vetted) request.
    """

    def __init__(
        self,
        *,
        default_route: Route | None = None,
        limits: httpx.Limits | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        **kwargs: Any,
    ) -> None:
        transport = VettingTransport(
            default_route=default_route, limits=limits, network_backend=network_backend
        )
        super().__init__(transport=transport, trust_env=False, follow_redirects=False, **kwargs)


def require_vetting(client: httpx.AsyncClient, purpose: str) -> None:
    """Refuse a client that would connect without vetting (a plain ``httpx.AsyncClient``)."""
    if not isinstance(client, OutboundClient):
        raise TypeError(
            f"{purpose} needs an OutboundClient (docpipe.activities.io.outbound), "
            f"not {type(client).__name__}: every outbound connection is vetted and pinned"
        )
