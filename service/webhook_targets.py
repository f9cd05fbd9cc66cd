"""Where webhooks may go, and how a delivery reaches exactly the address that was checked.

A webhook URL is chosen by the user, so without a policy the service would make requests into
its own network on their behalf (server-side request forgery: the cloud metadata address, the
database, an admin port on 127.0.0.1). The policy:

* only ``http`` and ``https`` URLs with a host and no user name or password;
* every address the host resolves to must be global: private, loopback, link-local, shared
  (100.64/10), reserved, unspecified and multicast addresses are refused, including IPv4
  addresses inside IPv6 ones (``::ffff:127.0.0.1``, 6to4, NAT64), unless
  ``DVRL_WEBHOOK_ALLOWED_HOSTS`` names the host or a network that holds the address;
* the check runs when a job is submitted (a 422 at once) and again before every attempt (DNS
  can change), and the attempt connects to the address that was checked, with the URL's host in
  ``Host`` and as the TLS server name (certificates are verified against it), so a second DNS
  answer cannot redirect the connection (DNS rebinding);
* redirects are not followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpx

from .errors import ServiceError
from .settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2048
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (:: and ::1 aside)


class TargetRefused(ServiceError):
    """A webhook URL whose host is not a permitted destination (or does not resolve)."""

    slug, status, title = "webhook-url-refused", 422, "Webhook URL refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errors = [{"field": "notify.url", "message": message}]


def check_syntax(url: str) -> str:
    """The URL if it is an acceptable webhook URL by its spelling alone; ValueError says why
    not (no DNS here: this runs in the request's validation)."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("no spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("a URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("no user name or password in the URL (requests are signed instead)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("a port between 1 and 65535") from exc
    if port == 0:  # nothing listens on port 0: every delivery would fail
        raise ValueError("a port between 1 and 65535")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"a URL that can be sent to ({exc})") from exc
    return url


@dataclass(frozen=True)
class Target:
    """A checked destination: the URL, its host and port, and the address to connect to."""

    url: str
    host: str
    port: int
    address: Address


@lru_cache(maxsize=16)
def _allowances(setting: str) -> tuple[tuple[Network, ...], frozenset[str]]:
    networks: list[Network] = []
    names: set[str] = set()
    for entry in (e.strip() for e in setting.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return tuple(networks), frozenset(names)


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4 or NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: Address) -> str | None:
    """Why an address is not a public destination (None: it is one)."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        return _kind(inner)
    for kind, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("multicast", address.is_multicast),
                       ("unspecified", address.is_unspecified),
                       ("private", address.is_private)):
        if flag:
            return kind
    return None if address.is_global else "non-global"


def refusal(host: str, address: Address, settings: Settings) -> str | None:
    """Why ``address`` (an answer for ``host``) may not be reached, or None when it may."""
    kind = _kind(address)
    if kind is None:
        return None
    networks, names = _allowances(settings.webhook_allowed_hosts)
    if host.lower().rstrip(".") in names or any(address in n for n in networks):
        return None
    article = "an" if kind[0] in "aeiou" else "a"
    return (f"{host} resolves to {address}, {article} {kind} address: webhooks go to public "
            "addresses only, unless DVRL_WEBHOOK_ALLOWED_HOSTS names the host or its network")


def resolve(url: str, settings: Settings) -> Target:
    """Resolve the URL's host and check every address it has; the target to connect to, or a
    TargetRefused that says why not."""
    parts = urlsplit(check_syntax(url))
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(a[4][0]).split("%")[0])
                                   for a in answers))
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    for address in addresses:  # one forbidden answer refuses the host: no mixing
        reason = refusal(host, address, settings)
        if reason is not None:
            raise TargetRefused(reason)
    return Target(url, host, port, addresses[0])


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: the receiver's status (None when none came) or what went wrong."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float) -> Outcome:
    """POST ``body`` to the checked address of ``target``; never raises for the receiver's
    failures. A new connection each time: a pooled one could carry another host's TLS name."""
    url = httpx.URL(target.url)
    pinned = url.copy_with(host=str(target.address))
    headers = headers | {"Host": url.netloc.decode("ascii")}
    sni = url.raw_host.decode("ascii")  # the URL's host (IDNA-encoded): the certificate's name
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    # httpx times each read: a receiver sending its answer a byte at a time held the sender
    # (every owner's events) for minutes. The whole attempt gets ``timeout_s``: past it, the
    # connection is shut, which ends a read in progress.
    streams: list[Any] = []

    def note_stream(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            streams.append(info["return_value"])

    deadline = threading.Timer(timeout_s, _shut, args=(streams,))
    deadline.daemon = True
    deadline.start()
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False,
                          verify=_tls()) as client:
            request = client.build_request("POST", pinned, content=body, headers=headers,
                                           extensions={"sni_hostname": sni,
                                                       "trace": note_stream})
            response = client.send(request, stream=True)  # only the status line counts:
            status = response.status_code                  # the body is never read
            response.close()
            if 300 <= status < 400:
                error = "redirects are not followed"
            elif not 200 <= status < 300:
                error = f"the receiver answered {status}"
    except httpx.TimeoutException:
        error = f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        deadline.cancel()
    elapsed = time.monotonic() - started
    if status is None and elapsed >= timeout_s:  # cut at the deadline, whatever httpx said
        error = f"no answer within {timeout_s:g} s"
    return Outcome(status, error, int(elapsed * 1000))


def _shut(streams: list[Any]) -> None:
    """End the attempt's connection from the deadline's thread (a read in progress returns)."""
    for stream in streams:
        with contextlib.suppress(OSError, AttributeError):  # closed already
            stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
