"""The download address policy: which hosts and addresses are refused, and why."""

from __future__ import annotations

import ipaddress

import pytest

from docpipe.activities.io.netguard import (
    AllowedNetwork,
    NetPolicy,
    address_class,
    embedded_ipv4,
    host_matches,
)
from docpipe.config import ConfigError, load_settings
from docpipe.errors import DocumentError
from docpipe.models import Stage


@pytest.mark.parametrize(
    ("address", "klass"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.169.254", "link-local (cloud metadata endpoint)"),
        ("169.254.1.1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared address space (CGNAT, 100.64.0.0/10)"),
        ("100.127.255.254", "shared address space (CGNAT, 100.64.0.0/10)"),
        ("224.0.0.251", "multicast"),
        ("239.1.1.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "private"),
        ("192.0.2.1", "private"),  # TEST-NET documentation range
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("fec0::1", "site-local"),
        ("fd00:ec2::254", "link-local (cloud metadata endpoint)"),
        ("64:ff9b:1::1", "private (local-use NAT64)"),
    ],
)
def test_non_public_addresses_are_classified(address: str, klass: str) -> None:
    assert address_class(ipaddress.ip_address(address)) == klass


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
        ("::ffff:0:a00:1", "10.0.0.1"),  # IPv4-translated
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64
        ("2002:c0a8:0101::1", "192.168.1.1"),  # 6to4
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible
    ],
)
def test_ipv4_embedded_in_ipv6_is_judged_as_ipv4(address: str, inner: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert str(embedded_ipv4(parsed)) == inner
    why = address_class(parsed)
    assert why is not None and f"embedded in IPv6 {parsed}" in why


def test_teredo_is_refused_as_a_prefix_whatever_client_it_names() -> None:
    # Server 65.54.227.120, client 8.8.8.8 (stored inverted): a public client is no
    # proof of where a Teredo relay delivers the packets.
    address = ipaddress.ip_address("2001:0:4136:e378:8000:63bf:f7f7:f7f7")
    assert str(address.teredo[1]) == "8.8.8.8"
    assert address_class(address) == "Teredo tunnel (2001::/32)"


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is None
    NetPolicy().check_address("example.org", ipaddress.ip_address(address))


def test_a_refusal_is_a_document_error_naming_host_address_and_class() -> None:
    with pytest.raises(DocumentError) as caught:
        NetPolicy().pick("metadata.internal", ["169.254.169.254"])
    assert caught.value.stage == Stage.DOWNLOAD
    assert caught.value.reason == (
        "refused host 'metadata.internal': resolves to 169.254.169.254, a link-local "
        "(cloud metadata endpoint) address (allow it with DOWNLOAD_ALLOWED_NETWORKS or "
        "DOWNLOAD_ALLOW_PRIVATE_NETWORKS)"
    )


def test_every_answer_must_pass() -> None:
    assert NetPolicy().pick("a.example", ["8.8.8.8", "1.1.1.1"]) == "8.8.8.8"
    with pytest.raises(DocumentError, match=r"10\.0\.0\.7, a private"):
        NetPolicy().pick("a.example", ["8.8.8.8", "10.0.0.7"])
    with pytest.raises(DocumentError, match="has no address"):
        NetPolicy().pick("a.example", [])


def test_ipv6_scope_ids_are_ignored() -> None:
    with pytest.raises(DocumentError, match="link-local"):
        NetPolicy().pick("a.example", ["fe80::1%eth0"])


def test_allowed_networks_and_allow_private() -> None:
    policy = NetPolicy.build(allowed_networks="10.1.0.0/16, 127.0.0.1/32")
    assert policy.pick("docs.internal", ["10.1.2.3"]) == "10.1.2.3"
    assert policy.pick("::ffff:127.0.0.1", ["::ffff:127.0.0.1"]) == "::ffff:7f00:1"
    with pytest.raises(DocumentError, match="private"):
        policy.pick("other.internal", ["10.2.0.1"])
    with pytest.raises(DocumentError, match="link-local"):
        policy.pick("meta", ["169.254.169.254"])
    assert NetPolicy(allow_private=True).pick("x", ["169.254.169.254"]) == "169.254.169.254"


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        ("docs.example.com", "docs.example.com", True),
        ("DOCS.Example.com.", "docs.example.com", True),
        ("a.docs.example.com", "docs.example.com", False),
        ("a.example.com", "*.example.com", True),
        ("a.b.example.com", "*.example.com", True),
        ("example.com", "*.example.com", False),
        ("badexample.com", "*.example.com", False),
        ("::1", "[::1]", True),
    ],
)
def test_host_patterns(host: str, pattern: str, matches: bool) -> None:
    assert host_matches(host, pattern) is matches


def test_host_lists() -> None:
    policy = NetPolicy.build(allowed_hosts="*.example.com,files.org", denied_hosts="x.example.com")
    policy.check_host("a.example.com")
    policy.check_host("files.org")
    with pytest.raises(DocumentError, match=r"'x\.example\.com' is on DOWNLOAD_DENIED_HOSTS"):
        policy.check_host("X.example.com")
    with pytest.raises(DocumentError, match=r"'evil\.org' is not on DOWNLOAD_ALLOWED_HOSTS"):
        policy.check_host("evil.org")
    NetPolicy.build(denied_hosts="bad.org").check_host("anything.else")  # no allowlist


def test_settings_build_the_policy_and_default_to_strict() -> None:
    assert NetPolicy.from_settings(load_settings()) == NetPolicy()
    policy = NetPolicy.from_settings(
        load_settings(
            download_allow_private_networks=True,
            download_allowed_hosts=" a.org , *.b.org ",
            download_denied_hosts="c.org",
            download_allowed_networks="10.0.0.0/8,fd00::/8",
        )
    )
    assert policy.allow_private
    assert policy.allowed_hosts == ("a.org", "*.b.org")
    assert policy.denied_hosts == ("c.org",)
    assert [str(n) for n in policy.allowed_networks] == ["10.0.0.0/8", "fd00::/8"]


def test_a_bad_cidr_fails_at_start() -> None:
    with pytest.raises(ConfigError, match="DOWNLOAD_ALLOWED_NETWORKS"):
        load_settings(download_allowed_networks="10.0.0.0/8,not-a-net")


# --------------------------------------------------- allowed networks: ports


@pytest.mark.parametrize(
    ("entry", "network", "ports"),
    [
        ("10.0.0.0/8", "10.0.0.0/8", set()),
        (" 10.1.2.3/8 ", "10.0.0.0/8", set()),
        ("10.0.0.0/8:443", "10.0.0.0/8", {443}),
        ("10.0.0.0/8:443+8443", "10.0.0.0/8", {443, 8443}),
        ("10.0.0.5/32:8080", "10.0.0.5/32", {8080}),
        ("fd00::/8:443", "fd00::/8", {443}),
        ("fd00::1", "fd00::1/128", set()),  # an IPv6 address, not a port
    ],
)
def test_allowed_network_entries_parse(entry: str, network: str, ports: set[int]) -> None:
    parsed = AllowedNetwork.parse(entry)
    assert str(parsed.network) == network
    assert parsed.ports == ports
    assert AllowedNetwork.parse(str(parsed)) == parsed  # the setting syntax round-trips


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.5:443", "a port goes after a prefix length: 10.0.0.5/32:PORT"),
        ("10.0.0.0/8:", "'' is not a port"),
        ("10.0.0.0/8:http", "'http' is not a port"),
        ("10.0.0.0/8:0", "'0' is not a port"),
        ("10.0.0.0/8:70000", "'70000' is not a port"),
        ("10.0.0.0/8:443,8443", None),  # a comma starts a new entry: "8443" is no network
        ("intranet.example", "is not a network"),
    ],
)
def test_bad_allowed_network_entries_fail_at_start_with_the_syntax(
    entry: str, message: str | None
) -> None:
    for setting in ("download_allowed_networks", "webhook_allowed_networks"):
        with pytest.raises(ConfigError, match=setting.upper()) as caught:
            load_settings(**{setting: entry})
        assert message is None or message in str(caught.value)
        assert "CIDR:PORT" in str(caught.value) or "is not a port" in str(caught.value)


def test_a_port_list_limits_the_exemption_to_those_ports() -> None:
    policy = NetPolicy.build(allowed_networks="10.0.0.0/8:443+8443, 192.168.1.0/24")
    assert policy.pick("docs.internal", ["10.1.2.3"], 443) == "10.1.2.3"
    assert policy.pick("docs.internal", ["10.1.2.3"], 8443) == "10.1.2.3"
    with pytest.raises(DocumentError, match="does not list port 5432"):
        policy.pick("db.internal", ["10.1.2.3"], 5432)
    with pytest.raises(DocumentError, match="private"):
        policy.pick("docs.internal", ["10.1.2.3"])  # no port known: fail closed
    assert policy.pick("nas.internal", ["192.168.1.9"], 5432) == "192.168.1.9"  # no list: any


def test_settings_normalize_the_entries() -> None:
    settings = load_settings(download_allowed_networks=" 10.1.2.3/8:8443+443 ,fd00::/8")
    assert settings.download_allowed_networks == "10.0.0.0/8:443+8443,fd00::/8"


# ----------------------------------------- allowed networks: original source only


@pytest.mark.parametrize(
    ("allowed_networks", "source", "kept", "dropped", "why"),
    [
        pytest.param(
            "10.0.0.0/8, 192.168.0.0/16",
            ("10.1.2.3", 80),
            ("other.internal", "10.9.9.9", 80),  # within 10/8, which the source was in...
            ("nas.internal", "192.168.1.1", 80),  # ...not the network it never named
            "only for a source that names it, not a redirect",
            id="only-the-networks-the-original-source-named",
        ),
        pytest.param(
            "10.0.0.0/8:443",
            ("10.1.2.3", 443),
            ("b.internal", "10.4.5.6", 443),
            ("b.internal", "10.4.5.6", 22),
            "private",
            id="the-port-list-of-the-network-it-was-granted",
        ),
    ],
)
def test_a_redirect_keeps_only_what_the_original_source_was_granted(
    allowed_networks: str,
    source: tuple[str, int],
    kept: tuple[str, str, int],
    dropped: tuple[str, str, int],
    why: str,
) -> None:
    """The original source, an internal server, may redirect where it was allowed to go."""
    after = NetPolicy.build(allowed_networks=allowed_networks).for_redirects(*source)
    host, address, port = kept
    assert after.pick(host, [address], port) == address
    host, address, port = dropped
    with pytest.raises(DocumentError, match=why):
        after.pick(host, [address], port)


def test_a_public_source_cannot_redirect_into_an_allowed_network() -> None:
    policy = NetPolicy.build(allowed_networks="10.0.0.0/8")
    assert policy.pick("docs.internal", ["10.1.2.3"], 80) == "10.1.2.3"  # named directly
    after = policy.for_redirects("93.184.216.34", 80)
    assert after.allowed_networks == ()
    with pytest.raises(DocumentError) as caught:
        after.pick("docs.internal", ["10.1.2.3"], 80)
    assert "private" in caught.value.reason and "not a redirect" in caught.value.reason
    assert after.pick("cdn.example", ["8.8.8.8"], 443) == "8.8.8.8"  # public hops still pass


def test_allow_private_networks_is_a_blanket_switch_also_on_redirects() -> None:
    after = NetPolicy(allow_private=True).for_redirects("93.184.216.34", 80)
    assert after.pick("x.internal", ["10.0.0.1"], 80) == "10.0.0.1"


# ------------------------------------------------------- the other purposes


def test_webhooks_have_their_own_allowance_and_say_so() -> None:
    strict = NetPolicy.for_webhooks(load_settings())
    with pytest.raises(DocumentError, match=r"allow it with WEBHOOK_ALLOWED_NETWORKS\)$"):
        strict.pick("hooks.internal", ["10.0.0.8"], 443)
    # The download allowances do not open webhooks, and the other way round.
    settings = load_settings(
        download_allowed_networks="10.0.0.0/8", download_allow_private_networks=True
    )
    with pytest.raises(DocumentError, match="private"):
        NetPolicy.for_webhooks(settings).pick("hooks.internal", ["10.0.0.8"], 443)
    allowed = NetPolicy.for_webhooks(load_settings(webhook_allowed_networks="10.0.0.0/24:443"))
    assert allowed.pick("hooks.internal", ["10.0.0.8"], 443) == "10.0.0.8"


def test_a_configured_endpoint_may_be_internal() -> None:
    policy = NetPolicy.for_configured_endpoint()
    assert policy.pick("llm.internal", ["10.0.0.9"], 8000) == "10.0.0.9"
    assert policy.pick("localhost", ["127.0.0.1"], 8000) == "127.0.0.1"
