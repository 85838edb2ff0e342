"""Which network targets rehearsal may call: one rule for webhook URLs and provider base URLs.

A URL's host is resolved once. Every address it resolves to must be a globally
routable unicast address, unless the allow-list names the host, the address or
its network explicitly (that is how an operator allows a receiver or a model
server on their own network). A name that does not resolve is refused: there is
nothing to check. The caller then connects to ``Target.address``, the address
that passed, so the name cannot point somewhere else between the check and the
call (DNS rebinding).

Allow-list entries: ``*`` (any host whose addresses are all public), a host name
(``hooks.example.com``), a wildcard (``*.example.com``: its subdomains, not the
name itself), an address (``127.0.0.1``, ``[::1]``) or a network
(``10.0.0.0/8``), each with an optional port (``127.0.0.1:9000``,
``[::1]:9000``) that limits it to that port.

Everything here is pure except ``resolve_host``, the thin shell over the system
resolver; checks take the resolver as an argument.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve.
Resolver = Callable[[str, int], Sequence[Address]]

ANY_PUBLIC = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 6598 shared address space (carrier-grade NAT); Alibaba Cloud's metadata service is 100.100.100.200.
SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")
#: NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use): the last 32 bits are an IPv4 address.
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
#: Link-local addresses cloud providers serve instance metadata (and credentials) on.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


# --- the rule ---------------------------------------------------------------------------
def normalise_address(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 address it is; others as they are."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_v4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a transition form carries (6to4, Teredo, NAT64), with the form's name."""
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    if any(address in prefix for prefix in NAT64):
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _link_local(address: Address) -> str | None:
    if address in METADATA:
        return "a cloud metadata service address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    return None


_RULES: tuple[tuple[Callable[[Address], bool], str], ...] = (
    (lambda a: a.is_loopback, "a loopback address"),
    (lambda a: a.is_unspecified, "the unspecified address"),
    (lambda a: a.is_multicast, "a multicast address"),
    (lambda a: isinstance(a, ipaddress.IPv6Address) and a.is_site_local, "a site-local address (fec0::/10)"),
    (lambda a: a in SHARED_SPACE, "in the shared address space 100.64.0.0/10 (carrier-grade NAT, cloud metadata)"),
    (lambda a: a.is_private, "a private address"),
    (lambda a: a.is_reserved, "a reserved address"),
    (lambda a: not a.is_global, "an address that is not globally routable"),
)


def internal_reason(address: Address) -> str | None:
    """Why ``address`` is not a globally routable unicast address (a phrase), or ``None`` when it is one.

    IPv4-mapped, 6to4, Teredo and NAT64 forms are judged by the IPv4 address they carry as well.
    """
    address = normalise_address(address)
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            form, inner = embedded
            inner_reason = internal_reason(inner)
            if inner_reason is not None:
                return f"the {form} form of {inner}, {inner_reason}"
    link_local = _link_local(address)
    if link_local is not None:
        return link_local
    for refuses, reason in _RULES:
        if refuses(address):
            return reason
    return None


def is_public(address: Address) -> bool:
    """Whether ``address`` is a globally routable unicast address (the only kind allowed by default)."""
    return internal_reason(address) is None


# --- hosts and allow-lists --------------------------------------------------------------
def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def normalise_host(host: str) -> str:
    """``host`` as compared and resolved: lower case, IDNA (``xn--``) form, IPv6 without brackets.

    The trailing dot of a fully qualified name (``localhost.``, ``127.0.0.1.``) is dropped,
    and an address literal takes its canonical form. ``ValueError`` when it is not a host name.
    """
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.endswith("."):
        host = host[:-1]
    literal = _literal(host)
    if literal is not None:
        return str(literal)
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None
    labels = name.split(".")
    if len(name) > 253 or not all(0 < len(label) <= 63 for label in labels):
        raise ValueError(f"{host!r} is not a valid host name")
    if not all(label.replace("-", "").replace("_", "").isalnum() for label in labels):
        raise ValueError(f"{host!r} is not a valid host name")
    return name


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry: a host name, a ``*.`` wildcard, or a network (an address is a one-address network).

    ``port`` limits the entry to that port; ``None`` allows any.
    """

    text: str
    name: str | None = None
    network: Network | None = None
    port: int | None = None

    def allows_name(self, host: str, port: int) -> bool:
        """Whether this entry names ``host`` (normalised) on ``port``."""
        if self.name is None or (self.port is not None and self.port != port):
            return False
        if self.name.startswith("*."):
            return host.endswith(self.name[1:])
        return host == self.name

    def allows_address(self, address: Address, port: int) -> bool:
        """Whether this entry's network holds ``address`` and its port (if any) is ``port``."""
        if self.network is None or (self.port is not None and self.port != port):
            return False
        return address.version == self.network.version and address in self.network


def _split_port(text: str) -> tuple[str, int | None]:
    """``host[:port]``, ``[v6][:port]``; a bare IPv6 address or network has no port."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("unbalanced brackets")
        return host, _port(rest[1:]) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port)
    return text, None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{text!r} is not a port")
    return int(text)


def parse_entry(text: str) -> AllowEntry:
    """One allow-list entry; ``ValueError`` when it is neither a host name, a wildcard, an address nor a network."""
    host, port = _split_port(text.strip().lower())
    if "/" in host:
        return AllowEntry(text, network=ipaddress.ip_network(host, strict=False), port=port)
    literal = _literal(host)
    if literal is not None:
        return AllowEntry(text, network=ipaddress.ip_network(normalise_address(literal)), port=port)
    if host.startswith("*."):
        return AllowEntry(text, name="*." + normalise_host(host[2:]), port=port)
    return AllowEntry(text, name=normalise_host(host), port=port)


@dataclass(frozen=True)
class AllowList:
    """A parsed allow-list setting: whether any public host is allowed, and the explicit entries."""

    setting: str
    any_public: bool
    entries: tuple[AllowEntry, ...]

    def names(self, host: str, port: int) -> bool:
        """Whether an entry names ``host`` itself (then all its addresses are allowed)."""
        return any(entry.allows_name(host, port) for entry in self.entries)

    def lists_address(self, address: Address, port: int) -> bool:
        """Whether an entry's network holds ``address``."""
        return any(entry.allows_address(address, port) for entry in self.entries)

    @property
    def has_networks(self) -> bool:
        """Whether any entry is an address or a network (only then can an unnamed host still be allowed)."""
        return any(entry.network is not None for entry in self.entries)


def parse_allow(values: Iterable[str], setting: str) -> AllowList:
    """An allow-list setting (``setting`` names it in errors); ``ConfigError`` naming the setting on a bad entry."""
    entries, any_public = [], False
    for value in values:
        if value.strip() == ANY_PUBLIC:
            any_public = True
            continue
        try:
            entries.append(parse_entry(value))
        except ValueError as exc:
            raise ConfigError(
                f"{setting} entry {value!r} is not '*', a host name, '*.domain', an address or a network, "
                f"with an optional :port ({exc})",
                param=setting,
            ) from None
    return AllowList(setting, any_public, tuple(entries))


# --- checking a URL ---------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A URL that passed the check, and the address to connect to (no second DNS lookup).

    ``host`` is the normalised host: what the Host header, TLS SNI and certificate
    check must use. ``address`` is the first address it resolved to; every one of
    ``addresses`` passed.
    """

    url: str
    scheme: str
    host: str
    port: int
    address: Address
    addresses: tuple[Address, ...]

    @property
    def tls_name(self) -> str | None:
        """The name to send as SNI and verify the certificate against (``None`` for an address literal)."""
        return None if _literal(self.host) is not None else self.host

    def is_origin(self, scheme: str, host: str, port: int | None) -> bool:
        """Whether ``scheme://host:port`` (as an HTTP client parsed the URL) is this target's origin."""
        try:
            same_host = normalise_host(host) == self.host
        except ValueError:
            return False
        return scheme == self.scheme and same_host and (port or DEFAULT_PORTS.get(scheme)) == self.port

    def pin(
        self, scheme: str, host: str, port: int | None, extensions: Mapping[str, Any], *, what: str, param: str
    ) -> tuple[str, dict[str, Any]]:
        """The checked address a request for ``scheme://host:port`` goes to, and its extensions with the TLS name.

        SNI and the certificate check keep the host name. Any other origin (a redirect, say) is a
        ``ConfigError`` naming ``param``.
        """
        if not self.is_origin(scheme, host, port):
            raise ConfigError(f"{what} request to {host!r} refused: only the checked target may be called", param=param)
        pinned = dict(extensions)
        if self.tls_name is not None:
            pinned["sni_hostname"] = self.tls_name
        return str(self.address), pinned


def resolve_host(host: str, port: int) -> list[Address]:
    """The system resolver's addresses for ``host``, in its order of preference; ``OSError`` when it fails."""
    addresses: list[Address] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _parse_url(url: str, param: str, what: str) -> tuple[str, str, int]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"{what} must be an http(s) URL with a host", param=param)
    try:
        port = parts.port
        host = normalise_host(parts.hostname)
    except ValueError as exc:
        raise ConfigError(f"{what} is not a valid URL: {exc}", param=param) from None
    return scheme, host, port or DEFAULT_PORTS[scheme]


def _resolve(host: str, port: int, resolve: Resolver, param: str, what: str) -> tuple[Address, ...]:
    literal = _literal(host)
    if literal is not None:
        return (normalise_address(literal),)
    try:
        found = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"{what} host {host!r} does not resolve ({exc}); only a host that resolves can be checked and called",
            param=param,
        ) from None
    addresses = tuple(dict.fromkeys(normalise_address(address) for address in found))
    if not addresses:
        raise ConfigError(f"{what} host {host!r} resolves to no address", param=param)
    return addresses


def _entry_hint(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f'"{shown}" (or "{shown}:{port}" for this port only)'


def _refuse(host: str, port: int, address: Address, rules: AllowList, param: str, what: str) -> ConfigError:
    where = f"{what} host {host!r}" + ("" if str(address) == host else f" resolves to {address}, which")
    reason = internal_reason(address)
    if reason is None:
        return ConfigError(f"{where} is not allowed: {rules.setting} does not list it", param=param)
    return ConfigError(
        f"{where} is {reason}, not a public address; to allow it, add {_entry_hint(host, port)} to {rules.setting}",
        param=param,
    )


def check_url(
    url: str,
    allow: Iterable[str],
    *,
    setting: str,
    param: str,
    what: str,
    resolve: Resolver = resolve_host,
) -> Target:
    """Check ``url`` against the allow-list setting ``allow``; the target to connect to, else ``ConfigError``.

    The error names ``param`` and, in its message, ``what`` was refused, the address and
    ``setting`` (the environment variable to change).
    """
    rules = parse_allow(allow, setting)
    scheme, host, port = _parse_url(url, param, what)
    named = rules.names(host, port)
    if not (named or rules.any_public or rules.has_networks):
        raise ConfigError(f"{what} host {host!r} (port {port}) is not allowed: {setting} does not list it", param=param)
    addresses = _resolve(host, port, resolve, param, what)
    for address in addresses:
        if named or rules.lists_address(address, port):
            continue
        if rules.any_public and is_public(address):
            continue
        raise _refuse(host, port, address, rules, param, what)
    return Target(url.strip(), scheme, host, port, addresses[0], addresses)
