"""Requests to subscribers' callback URLs, which never reach an internal address.

A callback URL is anyone's to choose, so Shutter's requests to it must not become
a way into the networks Shutter runs in (SSRF). Every connection is opened
through AddressGuard: the host name is resolved once, every address it resolves
to is checked, and the connection goes to that checked address, so a name that
answers a public address to the check and a private one to the connect (DNS
rebinding) gets nowhere. The URL keeps its host name, so the Host header, TLS
SNI and the certificate check are the name's. The check runs when a connection
is opened, before any byte is sent: at the handshake and at each delivery (a
kept-alive connection is one to an address checked when it opened). Redirects
are never followed, and the environment's proxies are not used (a proxy would
connect on our behalf, past the check).

Refused: loopback, private, link-local, multicast, unspecified, reserved and
other non-global addresses (IPv4-mapped IPv6 ones as their IPv4 address),
unless SUBSCRIPTION_CALLBACK_ALLOWED_NETWORKS lists a network holding them.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Protocol

import httpcore
import httpx

# Small requests go out at once: with Nagle's algorithm a POST written as headers then
# body waits for the callback's delayed ACK (~40 ms) before its body leaves.
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
MAX_BODY = 4096  # of a callback's answer: the handshake echoes a short challenge, the rest is ignored
USER_AGENT = "Shutter-Subscriptions/1.0"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackError(Exception):
    """The callback could not be reached: refused by the guard, or a network failure."""


class CallbackRefused(CallbackError):
    """The callback's host is, or resolves to, an address callbacks may not reach."""


class UnknownHost(CallbackError):
    """The callback's host name does not resolve."""


@dataclass(frozen=True)
class CallbackResponse:
    status: int
    body: bytes  # at most MAX_BODY bytes of it


class CallbackClient(Protocol):
    """What the subscription service needs of HTTP (one backend: HttpCallbacks)."""

    def get(self, url: str, params: dict[str, str]) -> CallbackResponse: ...

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> CallbackResponse: ...


class AddressGuard:
    """Resolves a host name and says which of its addresses a callback may reach."""

    def __init__(self, allowed_networks: list[str]) -> None:
        # A malformed CIDR fails here, when the services are built, not at the first delivery.
        self.allowed = [ipaddress.ip_network(cidr, strict=False) for cidr in allowed_networks]

    def is_allowed(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allowed):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)

    def resolve(self, host: str, port: int) -> str:
        """The address to connect to for `host`; CallbackRefused when any it resolves to is refused
        (a name that also answers an internal address is not trusted with the others)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:  # socket.gaierror is an OSError
            raise UnknownHost(f"cannot resolve {host!r}: {error}") from error
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
        refused = [address for address in addresses if not self.is_allowed(address)]
        if not addresses or refused:
            raise CallbackRefused(f"{host!r} resolves to {refused[0] if refused else 'nothing'}, "
                                  f"which callbacks may not reach")
        return str(addresses[0])


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's own sockets, opened to the address the guard resolved and checked."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = self.guard.resolve(host, port)
        return super().connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                   socket_options=socket_options)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport whose connection pool connects through the guard.

    HTTPTransport builds its httpcore pool itself and takes no network backend, so
    the pool is the same one, built with ours (httpx 0.28's `_pool`, pinned).
    """

    def __init__(self, guard: AddressGuard, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            socket_options=NO_DELAY,
            network_backend=_GuardedBackend(guard),
        )


class HttpCallbacks:
    """CallbackClient over real HTTP (httpx), every connection through an AddressGuard."""

    def __init__(self, guard: AddressGuard, timeout_seconds: float, max_connections: int = 100) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.timeout_seconds = timeout_seconds
        self.http = httpx.Client(
            transport=_GuardedTransport(guard, limits), timeout=timeout_seconds, follow_redirects=False,
            trust_env=False, headers={"User-Agent": USER_AGENT},
        )

    def get(self, url: str, params: dict[str, str]) -> CallbackResponse:
        try:  # added to the URL's own query (httpx's params= would replace it)
            url = httpx.URL(url).copy_merge_params(params)
        except httpx.InvalidURL as error:
            raise CallbackError(f"InvalidURL: {error}") from error
        return self._send("GET", url)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> CallbackResponse:
        return self._send("POST", url, content=body, headers=headers)

    def _send(self, method: str, url: str | httpx.URL, **kwargs) -> CallbackResponse:
        # The timeout bounds each connect and read; a body that trickles in is also cut
        # at twice that in all, so a slow callback cannot hold an API worker for long.
        deadline = time.monotonic() + 2 * self.timeout_seconds
        try:
            with self.http.stream(method, url, **kwargs) as response:
                body = b""
                for chunk in response.iter_bytes():  # a huge or endless answer is cut, not read
                    body += chunk
                    if len(body) >= MAX_BODY or time.monotonic() > deadline:
                        break
                return CallbackResponse(response.status_code, body[:MAX_BODY])
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise CallbackError(f"{type(error).__name__}: {error}") from error

    def close(self) -> None:
        self.http.close()
