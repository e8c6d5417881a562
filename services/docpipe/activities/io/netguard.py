"""Which hosts and addresses the downloader may connect to (pure policy, no IO).

A document source is untrusted input: without a guard, ``http://169.254.169.254/``
reads cloud credentials and ``http://localhost:5432/`` probes the cluster's own
services (SSRF). :class:`NetPolicy` answers two questions, both raising
:class:`DocumentError` (the document fails; retrying cannot help):

* :meth:`NetPolicy.check_host` -- is this host name allowed at all (the
  ``DOWNLOAD_DENIED_HOSTS`` / ``DOWNLOAD_ALLOWED_HOSTS`` lists)?
* :meth:`NetPolicy.check_address` -- may we connect to this resolved address?
  Loopback, link-local (cloud metadata), private, CGNAT, multicast, reserved,
  unspecified and other non-global addresses are refused, including IPv6 and
  the IPv4-mapped/-translated/NAT64/6to4/Teredo forms that embed an IPv4
  address, unless ``DOWNLOAD_ALLOW_PRIVATE_NETWORKS`` is set or the address is
  inside one of ``DOWNLOAD_ALLOWED_NETWORKS``.

The allowlist of hosts only narrows what may be fetched; it does not lift the
address check (an allowed host that resolves to 10.0.0.5 still needs
``DOWNLOAD_ALLOWED_NETWORKS=10.0.0.0/24``), so a hijacked DNS record for an
allowed name cannot reach internal services.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from docpipe.errors import DocumentError
from docpipe.models import Stage

if TYPE_CHECKING:
    from docpipe.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Not flagged by ipaddress' is_private in every Python version.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# "IPv4-translated" addresses (RFC 2765): ::ffff:0:a.b.c.d.
_V4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
# NAT64 well-known prefix (RFC 6052) and the local-use one (RFC 8215).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# IPv4-compatible (deprecated) ::a.b.c.d.
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}


def parse_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """A comma-separated setting (or a list) as stripped, non-empty items."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item.strip())


def normalize_host(host: str) -> str:
    """Lower-case, no trailing dot, no IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


def host_matches(host: str, pattern: str) -> bool:
    """``pattern`` is an exact host, or ``*.suffix`` (any subdomain of suffix, not suffix itself)."""
    host, pattern = normalize_host(host), normalize_host(pattern)
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, translated, NAT64, 6to4, ...)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _V4_TRANSLATED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if address in _V4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None if it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.teredo is not None:
        # Packets go through a relay to a client behind NAT: neither the embedded
        # client address nor the server address says where they really land.
        return "Teredo tunnel (2001::/32)"
    inner = embedded_ipv4(address)
    if inner is not None:
        # The IPv4 address is where the packets go: judge that one.
        why = address_class(inner)
        return None if why is None else f"{why} (embedded in IPv6 {address})"
    if address in _METADATA:
        return "link-local (cloud metadata endpoint)"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared address space (CGNAT, 100.64.0.0/10)"
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64_LOCAL:
        return "private (local-use NAT64)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:  # before is_private, which also covers 240.0.0.0/4 in 3.11
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-global (special-purpose)"
    return None


def parse_address(text: str) -> IPAddress:
    """An address as getaddrinfo returns it (an IPv6 one may carry a %scope)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


@dataclass(frozen=True)
class NetPolicy:
    """Where downloads may go; the default refuses every non-public address."""

    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    """If non-empty, only these hosts (exact or ``*.suffix``) may be fetched."""
    denied_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()
    """Addresses inside these networks pass even if private (an internal document server)."""

    @classmethod
    def build(
        cls,
        *,
        allow_private: bool = False,
        allowed_hosts: str | Iterable[str] | None = None,
        denied_hosts: str | Iterable[str] | None = None,
        allowed_networks: str | Iterable[str] | None = None,
    ) -> NetPolicy:
        """A policy from setting-style values (comma lists or iterables); bad CIDRs raise ValueError."""
        return cls(
            allow_private=allow_private,
            allowed_hosts=tuple(normalize_host(h) for h in parse_list(allowed_hosts)),
            denied_hosts=tuple(normalize_host(h) for h in parse_list(denied_hosts)),
            allowed_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in parse_list(allowed_networks)
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> NetPolicy:
        return cls.build(
            allow_private=settings.download_allow_private_networks,
            allowed_hosts=settings.download_allowed_hosts,
            denied_hosts=settings.download_denied_hosts,
            allowed_networks=settings.download_allowed_networks,
        )

    def check_host(self, host: str) -> None:
        """Refuse a host on the denylist, or off a non-empty allowlist."""
        if any(host_matches(host, pattern) for pattern in self.denied_hosts):
            raise DocumentError(
                Stage.DOWNLOAD, f"host {normalize_host(host)!r} is on DOWNLOAD_DENIED_HOSTS"
            )
        if self.allowed_hosts and not any(host_matches(host, p) for p in self.allowed_hosts):
            raise DocumentError(
                Stage.DOWNLOAD, f"host {normalize_host(host)!r} is not on DOWNLOAD_ALLOWED_HOSTS"
            )

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to ``address`` is refused, or None if it is allowed."""
        if any(_contains(network, address) for network in self.allowed_networks):
            return None
        if self.allow_private:
            return None
        return address_class(address)

    def check_address(self, host: str, address: IPAddress) -> None:
        why = self.refusal(address)
        if why is not None:
            shown = normalize_host(host)
            article = "an" if why[0] in "aeiou" else "a"
            via = "" if shown == str(address) else f" resolves to {address},"
            raise DocumentError(
                Stage.DOWNLOAD,
                f"refused host {shown!r}:{via} {article} {why} address "
                "(allow it with DOWNLOAD_ALLOWED_NETWORKS or DOWNLOAD_ALLOW_PRIVATE_NETWORKS)",
            )

    def pick(self, host: str, addresses: Iterable[str]) -> str:
        """The address to connect to: every answer must pass, the first one is used.

        All answers are vetted, not just the first: a name that answers one
        public and one internal address is refused rather than gambled on.
        """
        parsed = [parse_address(a) for a in addresses]
        if not parsed:
            raise DocumentError(Stage.DOWNLOAD, f"host {normalize_host(host)!r} has no address")
        for address in parsed:
            self.check_address(host, address)
        return str(parsed[0])


def _contains(network: IPNetwork, address: IPAddress) -> bool:
    if network.version == address.version:
        return address in network
    inner = embedded_ipv4(address)
    return inner is not None and inner in network
