"""Where the service may send a provider's notifications: a guard against a Subscription endpoint that points
into the plan's own network.

An endpoint is an https URL whose host resolves only to public addresses. A plan may allow more in its
configuration (``PRIORAUTH_SUBSCRIPTION_ALLOW``: host names, addresses or networks such as ``10.20.0.0/16``):
an allowed host may be reached over http and at private addresses. The address is checked again after DNS
resolution at every connection (the handshake and each delivery), and the request goes to the address that was
checked (with the Host header and TLS server name of the endpoint), so a DNS answer that changes between the
check and the connection cannot redirect it. What the provider is told of a failure names the rule, never what
answered at the address.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["EndpointPolicy", "EndpointRefused", "Target"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EndpointRefused(Exception):
    """The endpoint may not be reached; the message names the rule (safe to show the provider)."""


@dataclass(frozen=True)
class Target:
    """Where one connection goes: the URL with the checked address, and the endpoint's own host for the Host
    header and the TLS server name."""

    url: str
    host_header: str
    server_name: str | None


def _resolve(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class EndpointPolicy:
    """The plan's rule for endpoints: ``allow`` lists host names, addresses and networks it trusts."""

    def __init__(self, allow: Iterable[str] = (), resolve: Callable[[str, int], list[str]] = _resolve):
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allow:
            item = item.strip().lower()
            if not item:
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.hosts.add(item.rstrip("."))
        self._resolve = resolve

    def _allowed_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def _allowed_address(self, ip: Address) -> bool:
        return any(ip in net for net in self.networks)

    def check_url(self, endpoint: str) -> str | None:
        """What is wrong with the endpoint by itself (no DNS): the scheme, or an address literal the rule refuses."""
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        literal = _literal(host)
        allowed = self._allowed_host(host) or (literal is not None and self._allowed_address(literal))
        if parts.scheme.lower() != "https" and not allowed:
            return "the endpoint is an https URL (http only to hosts the plan allows in its configuration)"
        if literal is not None and not literal.is_global and not allowed:
            return "the endpoint is a private, loopback or link-local address, which the plan does not allow"
        return None

    def target(self, endpoint: str) -> Target:
        """The connection for ``endpoint`` now: resolved, every address checked; raises EndpointRefused."""
        problem = self.check_url(endpoint)
        if problem:
            raise EndpointRefused(problem)
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        https = parts.scheme.lower() == "https"
        port = parts.port or (443 if https else 80)
        literal = _literal(host)
        try:
            found = [literal] if literal is not None else [ipaddress.ip_address(a.split("%", 1)[0])
                                                           for a in self._resolve(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise EndpointRefused("the endpoint's host name does not resolve") from None
        if not found:
            raise EndpointRefused("the endpoint's host name does not resolve")
        if not self._allowed_host(host):
            for ip in found:
                if not ip.is_global and not self._allowed_address(ip):
                    raise EndpointRefused("the endpoint's host resolves to a private, loopback or link-local "
                                          "address, which the plan does not allow")
        ip = found[0]
        netloc = f"[{ip}]" if ip.version == 6 else str(ip)
        if parts.port:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return Target(url, host_header, host if https and literal is None else None)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
