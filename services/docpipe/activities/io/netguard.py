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

An allowed network (:class:`AllowedNetwork`) may name ports
(``10.0.0.0/8:443+8443``): the exemption then covers those ports only, so
allowing an internal document server does not open the databases beside it.
And it is granted by the *original* source only: :meth:`NetPolicy.for_redirects`
keeps the entries the first hop was admitted by, so a public host cannot
redirect a download into an allowed internal network that the CSV never named.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
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
class AllowedNetwork:
    """One entry of an ``*_ALLOWED_NETWORKS`` setting: a network, and the ports it is
    allowed on (none listed: every port).

    Syntax: ``CIDR`` or ``CIDR:PORT[+PORT...]``, e.g. ``10.0.0.0/8``,
    ``10.0.0.0/8:443+8443``, ``fd00::/8:443``. With ports the prefix length is
    required (``10.0.0.5/32:443``): ``fd00::443`` is an address, not a port.
    """

    network: IPNetwork
    ports: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowedNetwork:
        """An entry from its setting syntax; ValueError says what is wrong with it."""
        text = text.strip()
        ports: frozenset[int] = frozenset()
        base, slash, rest = text.partition("/")
        if slash and ":" in rest:
            prefix, _, listed = rest.partition(":")
            text = f"{base}/{prefix}"
            ports = frozenset(_parse_port(p, text) for p in listed.split("+"))
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            hint = ""
            if not slash and text.count(":") == 1:
                hint = f" (a port goes after a prefix length: {text.split(':')[0]}/32:PORT)"
            raise ValueError(
                f"{text!r} is not a network: write CIDR or CIDR:PORT+PORT, "
                f"e.g. 10.0.0.0/8 or 10.0.0.0/8:443+8443{hint}"
            ) from None
        return cls(network, ports)

    def admits(self, address: IPAddress, port: int | None) -> bool:
        """``address`` is inside the network and ``port`` is one it is allowed on
        (an unknown port passes only an entry without a port list: fail closed)."""
        if self.ports and port not in self.ports:
            return False
        return _contains(self.network, address)

    def __str__(self) -> str:
        if not self.ports:
            return str(self.network)
        return f"{self.network}:{'+'.join(str(p) for p in sorted(self.ports))}"


def parse_networks(value: str | Iterable[str] | None) -> tuple[AllowedNetwork, ...]:
    """An ``*_ALLOWED_NETWORKS`` setting (comma list of entries); bad entries raise ValueError."""
    return tuple(AllowedNetwork.parse(item) for item in parse_list(value))


def _parse_port(text: str, network: str) -> int:
    port = text.strip()
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{port!r} is not a port (1-65535) in the entry for {network}")
    return int(port)


@dataclass(frozen=True)
class NetPolicy:
    """Where downloads may go; the default refuses every non-public address."""

    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    """If non-empty, only these hosts (exact or ``*.suffix``) may be fetched."""
    denied_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[AllowedNetwork, ...] = ()
    """Addresses inside these networks (on their ports) pass even if private."""
    allow_hint: str = "DOWNLOAD_ALLOWED_NETWORKS or DOWNLOAD_ALLOW_PRIVATE_NETWORKS"
    """The settings a refusal message points at (each purpose has its own)."""
    redirect_withheld: tuple[AllowedNetwork, ...] = ()
    """Allowed networks that do not count on this redirect (the original source did
    not name them): kept only to say so in the refusal."""

    @classmethod
    def build(
        cls,
        *,
        allow_private: bool = False,
        allowed_hosts: str | Iterable[str] | None = None,
        denied_hosts: str | Iterable[str] | None = None,
        allowed_networks: str | Iterable[str] | None = None,
        allow_hint: str | None = None,
    ) -> NetPolicy:
        """A policy from setting-style values (comma lists or iterables).

        Bad network entries raise ValueError."""
        policy = cls(
            allow_private=allow_private,
            allowed_hosts=tuple(normalize_host(h) for h in parse_list(allowed_hosts)),
            denied_hosts=tuple(normalize_host(h) for h in parse_list(denied_hosts)),
            allowed_networks=parse_networks(allowed_networks),
        )
        return policy if allow_hint is None else replace(policy, allow_hint=allow_hint)

    @classmethod
    def from_settings(cls, settings: Settings) -> NetPolicy:
        return cls.build(
            allow_private=settings.download_allow_private_networks,
            allowed_hosts=settings.download_allowed_hosts,
            denied_hosts=settings.download_denied_hosts,
            allowed_networks=settings.download_allowed_networks,
        )

    @classmethod
    def for_webhooks(cls, settings: Settings) -> NetPolicy:
        """Webhook targets: public addresses, plus WEBHOOK_ALLOWED_NETWORKS."""
        return cls.build(
            allowed_networks=settings.webhook_allowed_networks,
            allow_hint="WEBHOOK_ALLOWED_NETWORKS",
        )

    @classmethod
    def for_configured_endpoint(cls) -> NetPolicy:
        """A server the operator configured (LLM_ENDPOINT): its network may be internal.

        Its URL comes from the settings, not from a document, so no address class
        is refused; what the vetting path still gives it is the DNS pin (one
        answer per connection, connected to directly) and a pool keyed by it.
        """
        return cls(allow_private=True, allow_hint="LLM_ENDPOINT")

    def for_redirects(self, address: str, port: int) -> NetPolicy:
        """The policy for the hops after a first hop that connected to ``address:port``.

        An allowed network counts on a redirect only if the original source was
        admitted by it: a public page cannot send the downloader into
        DOWNLOAD_ALLOWED_NETWORKS, while an internal server may still redirect
        within its own network. DOWNLOAD_ALLOW_PRIVATE_NETWORKS, a blanket switch
        for development, is unaffected.
        """
        parsed = parse_address(address)
        granted = tuple(n for n in self.allowed_networks if n.admits(parsed, port))
        withheld = tuple(n for n in self.allowed_networks if n not in granted)
        return replace(
            self,
            allowed_networks=granted,
            redirect_withheld=self.redirect_withheld + withheld,
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

    def refusal(self, address: IPAddress, port: int | None = None) -> str | None:
        """Why a connection to ``address`` (on ``port``) is refused, or None if it is allowed."""
        if self.allow_private:
            return None
        why = address_class(address)
        if why is None or any(n.admits(address, port) for n in self.allowed_networks):
            return None
        if any(n.admits(address, port) for n in self.redirect_withheld):
            return (
                f"{why} (its allowed network counts only for a source that names it, "
                "not a redirect)"
            )
        if any(_contains(n.network, address) for n in self.allowed_networks):
            return f"{why} (its allowed network does not list port {port})"
        return why

    def check_address(self, host: str, address: IPAddress, port: int | None = None) -> None:
        why = self.refusal(address, port)
        if why is not None:
            shown = normalize_host(host)
            article = "an" if why[0] in "aeiou" else "a"
            via = "" if shown == str(address) else f" resolves to {address},"
            raise DocumentError(
                Stage.DOWNLOAD,
                f"refused host {shown!r}:{via} {article} {why} address "
                f"(allow it with {self.allow_hint})",
            )

    def pick(self, host: str, addresses: Iterable[str], port: int | None = None) -> str:
        """The address to connect to: every answer must pass, the first one is used.

        All answers are vetted, not just the first: a name that answers one
        public and one internal address is refused rather than gambled on.
        ``port``: the port to connect to (None: only networks without a port list admit).
        """
        parsed = [parse_address(a) for a in addresses]
        if not parsed:
            raise DocumentError(Stage.DOWNLOAD, f"host {normalize_host(host)!r} has no address")
        for address in parsed:
            self.check_address(host, address, port)
        return str(parsed[0])


def _contains(network: IPNetwork, address: IPAddress) -> bool:
    if network.version == address.version:
        return address in network
    inner = embedded_ipv4(address)
    return inner is not None and inner in network
