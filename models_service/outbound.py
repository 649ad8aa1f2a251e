"""Where model servers may be: the outbound policy of the ``openai`` backend
(docs/model-servers.md).

A model version's ``base_url`` receives every prompt of its rounds and, with
``api_key_env``, a secret of the process. Whoever edits versions must therefore not be
able to point one at a host of their own, nor at an address inside the platform's network
(the database, the cloud's metadata service, the app itself). An operator lists the hosts
model servers may run at in ``MODEL_HOSTS_ALLOWED`` (config/settings.py), comma-separated:

- ``vllm``, ``models.example.com``  a host name, exactly;
- ``*.example.com``                 any name under that domain;
- ``10.0.0.7``, ``10.20.0.0/16``    an address or a range (IPv4 or IPv6).

A URL's host must be listed: a name by name (exactly or by a wildcard), an address by
an address or range. Every address a name resolves to is checked again at connect time,
and the connection goes to the address that was checked (``PolicyNetworkBackend``), so a
name that resolves elsewhere later (DNS rebinding) gains nothing:

- an address inside a listed range is allowed;
- a name listed exactly may resolve to a public address or to a private one (a service
  of the operator's own network, such as ``vllm`` in docker-compose.yml);
- a name allowed by a wildcard must resolve to public addresses only;
- loopback, link-local (cloud metadata services), unspecified, multicast and reserved
  addresses are refused unless listed themselves, as an address or a range.

One refused address refuses the host: a name that resolves to a public and a loopback
address at once is not tried at all.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from models_service.backends import BackendUnavailable

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "MODEL_HOSTS_ALLOWED"
# A DNS name in ASCII (international names in their xn-- form), without a trailing dot.
_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")


class HostRefused(BackendUnavailable):
    """The outbound policy refuses this host or address; the message says which and why."""


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _address(text: str) -> IPAddress | None:
    """``text`` as an IP address, or None. IPv6 forms of an IPv4 address (mapped, NAT64,
    6to4) are judged as the IPv4 address they reach; a scope (``%eth0``) is dropped."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _special(address: IPAddress) -> str:
    """What kind of address must be listed by address to be reached; "" for any other."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    return ""


@dataclass(frozen=True)
class HostPolicy:
    names: frozenset[str] = frozenset()
    # "*.example.com" is kept as ".example.com".
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> HostPolicy:
        """The policy of a list of entries; ValueError names the first bad one."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("[") and entry.endswith("]"):
                entry = entry[1:-1]
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                pass
            else:
                if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
                    raise ValueError(f"{raw!r}: write IPv4 ranges in IPv4 form")
                networks.append(network)
                continue
            if entry.startswith("*."):
                if not _NAME.match(entry[2:]) or "." not in entry[2:]:
                    raise ValueError(f"{raw!r}: a wildcard covers the names under a domain, e.g. *.example.com")
                suffixes.append(entry[1:])
                continue
            if "*" in entry or not _NAME.match(entry):
                raise ValueError(
                    f"{raw!r} is neither a host name, a wildcard (*.example.com), an IP address nor a range (10.0.0.0/8)"
                )
            names.add(entry)
        return cls(names=frozenset(names), suffixes=tuple(suffixes), networks=tuple(networks))

    def _listed_network(self, address: IPAddress) -> bool:
        return any(address.version == network.version and address in network for network in self.networks)

    def host_refusal(self, host: str) -> str:
        """Why the host of a URL may not be connected to, before any look-up; "" when it may."""
        host = host.lower().rstrip(".")
        address = _address(host)
        if address is not None:
            if self._listed_network(address):
                return ""
            return f"the address {address} is not among the model hosts this platform allows ({SETTING})"
        if host in self.names or host.endswith(self.suffixes):
            return ""
        return f"the host {host!r} is not among the model hosts this platform allows ({SETTING})"

    def address_refusal(self, host: str, address: IPAddress) -> str:
        """Why ``host`` may not be reached at ``address`` (one it resolved to); "" when it may."""
        if self._listed_network(address):
            return ""
        host = host.lower().rstrip(".")
        if _address(host) is not None:
            return f"the address {address} is not among the model hosts this platform allows ({SETTING})"
        special = _special(address)
        if special:
            return f"{host!r} resolves to {address}, {special}, which {SETTING} does not list"
        if address.is_global:
            return "" if (host in self.names or host.endswith(self.suffixes)) else self.host_refusal(host)
        if host in self.names:
            return ""  # a private address of a name the operator listed by name
        if host.endswith(self.suffixes):
            return f"{host!r} resolves to {address}, a private address; a wildcard entry allows public addresses only"
        return self.host_refusal(host)


@functools.lru_cache(maxsize=8)
def _parsed(entries: tuple[str, ...]) -> HostPolicy:
    return HostPolicy.parse(entries)


def host_policy() -> HostPolicy:
    """The policy of the running settings (``MODEL_HOSTS_ALLOWED``)."""
    from django.conf import settings

    return _parsed(tuple(settings.MODEL_HOSTS_ALLOWED))


def url_refusal(url: str, policy: HostPolicy) -> str:
    """Why a model server's URL is refused before any connection; "" when it is not.

    The shape (scheme, no credentials, query or fragment) is checked by the backend's
    schema (``OpenAIConfig``) as well; this adds the host list."""
    shape = url_shape_refusal(url)
    if shape:
        return shape
    host = urlsplit(url).hostname or ""
    return policy.host_refusal(host)


def url_shape_refusal(url: str) -> str:
    """What is wrong with a model server's URL on its own; "" when nothing is.

    A query string or a fragment would swallow the path the backend appends
    (``chat/completions``) and reach any path of the host; credentials in a URL would be
    sent wherever it points."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "must be an http:// or https:// URL with a valid port, e.g. http://vllm:8000/v1"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL, e.g. http://vllm:8000/v1"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (user:password@); name the key's variable in api_key_env"
    if parts.query or "?" in url:
        return "must not carry a query string (?…)"
    if parts.fragment or "#" in url:
        return "must not carry a fragment (#…)"
    if port == 0:
        return "must name a port above 0"
    host = parts.hostname
    if _address(host) is None and not _NAME.match(host.rstrip(".")):
        return "the host must be a DNS name in ASCII (xn-- form for international names) or an IP address"
    return ""


# --- Connect time -------------------------------------------------------------------------


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order, without repeats."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror or exc}") from exc
    seen: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


def addresses_checked(host: str, port: int, policy: HostPolicy) -> list[str]:
    """The addresses to connect to for ``host``, every one allowed; HostRefused otherwise."""
    refusal = policy.host_refusal(host)
    if refusal:
        raise HostRefused(f"refused by the outbound policy: {refusal}")
    checked: list[str] = []
    for text in resolve(host, port):
        address = _address(text)
        if address is None:
            raise HostRefused(f"refused by the outbound policy: {host!r} resolves to {text!r}, not an IP address")
        refusal = policy.address_refusal(host, address)
        if refusal:
            logger.warning("outbound policy: %s", refusal)
            raise HostRefused(f"refused by the outbound policy: {refusal}")
        checked.append(str(address))
    if not checked:
        raise OSError(f"{host!r} resolves to no address")
    return checked


class PolicyNetworkBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the policy allows.

    httpcore asks for ``host``; this resolves it once, checks every address, and connects
    to a checked address, never to the name (which a second look-up could answer
    differently). TLS still verifies and sends the name: httpcore's connection passes the
    URL's host as ``server_hostname`` (httpcore/_sync/connection.py in the httpcore
    repository), and the Host header comes from the URL as well."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = addresses_checked(host, port, self.policy)
        except HostRefused:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # the next address, as socket.create_connection would
        assert error is not None
        raise error


class PolicyTransport(httpx.HTTPTransport):
    """An httpx transport whose connections obey ``policy``.

    httpx's ``HTTPTransport`` takes no network backend, so the connection pool it builds
    is replaced by the same pool with ours. The client must not add proxies from the
    environment (``trust_env=False``): a proxy connects wherever it is asked."""

    def __init__(self, policy: HostPolicy, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # SSL_CERT_FILE / SSL_CERT_DIR still apply
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=PolicyNetworkBackend(policy),
        )
