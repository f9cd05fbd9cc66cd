"""The destination policy, the pinned connection and the README's verification code, with a
real receiver on 127.0.0.1 (no database needed)."""

from __future__ import annotations

import ipaddress
import time

import pytest

from service import webhook_targets, webhooks
from service.settings import Settings
from service.webhook_targets import Target, TargetRefused, post, refusal, resolve
from tests.webhooks.conftest import readme_verify


def _settings(allowed: str = "") -> Settings:
    return Settings(webhook_allowed_hosts=allowed)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.0.0.2", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.251", "255.255.255.255", "::1", "fe80::1", "fc00::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "ff0e::1",
    "192.0.2.1", "::", "::127.0.0.2", "::10.0.0.1"])
def test_non_global_addresses_are_refused(address):
    reason = refusal("hooks.example", ipaddress.ip_address(address), _settings())
    assert reason is not None and "DVRL_WEBHOOK_ALLOWED_HOSTS" in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::6810:84e5"])
def test_public_addresses_are_allowed(address):
    assert refusal("hooks.example", ipaddress.ip_address(address), _settings()) is None


def test_the_allowance_names_networks_and_hosts_and_nothing_more():
    allowed = _settings("127.0.0.1, 10.20.0.0/16, Hooks.Internal.")
    assert refusal("x", ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal("x", ipaddress.ip_address("127.0.0.2"), allowed) is not None
    assert refusal("x", ipaddress.ip_address("10.20.3.4"), allowed) is None
    assert refusal("x", ipaddress.ip_address("10.21.0.1"), allowed) is not None
    assert refusal("hooks.internal", ipaddress.ip_address("10.99.0.1"), allowed) is None


@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://[::1]:8080/",
                                 "https://169.254.169.254/latest/meta-data",
                                 "http://[::ffff:127.0.0.1]/", "http://127.0.0.2:9000/"])
def test_resolve_refuses_private_targets(url):
    with pytest.raises(TargetRefused) as refused:
        resolve(url, _settings("127.0.0.1"))
    assert refused.value.errors[0]["field"] == "notify.url"


def test_the_refusal_reads_as_english():
    assert "an unspecified address" in refusal("x", ipaddress.ip_address("0.0.0.0"), _settings())
    assert "a private address" in refusal("x", ipaddress.ip_address("10.0.0.1"), _settings())


def test_a_host_that_does_not_resolve_is_refused():
    with pytest.raises(TargetRefused, match="does not resolve"):
        resolve("https://no-such-host.invalid/hook", _settings())


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://", "example.com/hook",
                                 "http://user:pw@example.com/", "http://example.com:99999/",
                                 "http://example.com:0/hook",
                                 "http://exa mple.com/", "javascript:alert(1)",
                                 "https://example.com/" + "a" * 2100])
def test_urls_of_the_wrong_shape_are_refused_by_their_spelling(url):
    with pytest.raises(ValueError):
        webhook_targets.check_syntax(url)


def test_the_connection_goes_to_the_checked_address_with_the_urls_host(receiver_factory):
    """The name below resolves nowhere: a request that arrives went to the checked address,
    carrying the URL's host, whatever DNS would say at connection time."""
    receiver = receiver_factory()
    port = receiver.server.server_address[1]
    target = Target(f"http://rebinding.invalid:{port}/hooks/dvrl", "rebinding.invalid", port,
                    ipaddress.ip_address("127.0.0.1"))
    outcome = post(target, b"{}", {"Content-Type": "application/json"}, timeout_s=5)
    assert outcome.delivered and outcome.status_code == 200
    (request,) = receiver.wait_for(1)
    assert request.headers["host"] == f"rebinding.invalid:{port}"
    assert request.path == "/hooks/dvrl"


def test_redirects_are_not_followed(receiver_factory):
    receiver = receiver_factory(statuses=(302,))
    target = resolve(receiver.url, _settings("127.0.0.1"))
    outcome = post(target, b"{}", {}, timeout_s=5)
    assert not outcome.delivered and outcome.status_code == 302
    assert outcome.error == "redirects are not followed"
    assert len(receiver.received) == 1  # Location (127.0.0.1:9) was not visited


def test_no_answer_is_a_failed_attempt_not_an_exception():
    closed = Target("http://127.0.0.1:9/", "127.0.0.1", 9, ipaddress.ip_address("127.0.0.1"))
    outcome = post(closed, b"{}", {}, timeout_s=2)
    assert not outcome.delivered and outcome.status_code is None and outcome.error


def test_the_readme_verification_accepts_our_signature_and_nothing_else():
    verify = readme_verify()
    body = b'{"id":"e1","type":"job.finished"}'
    now = int(time.time())
    header = webhooks.sign("whsec_abc", body, now)
    assert verify("whsec_abc", header, body)
    assert not verify("whsec_abc", header, body + b" ")  # another body
    assert not verify("whsec_other", header, body)  # another secret
    assert not verify("whsec_abc", webhooks.sign("whsec_abc", body, now - 3600), body)  # old
    assert not verify("whsec_abc", "garbage", body)
    assert not verify("whsec_abc", "t=x,v1=\u00e9", body)


def test_a_receiver_answering_a_byte_at_a_time_is_cut_at_the_timeout():
    """Each read had the timeout, not the attempt: a receiver trickling its answer held the
    sender, and every owner's events behind it, for 45 s against a timeout of 3."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            give_up = time.monotonic() + 10  # without the cut, the test fails rather than hangs
            while not done.is_set() and time.monotonic() < give_up:
                try:
                    connection.sendall(b"a")
                except OSError:
                    return  # the sender hung up
                done.wait(0.3)

    threading.Thread(target=trickle, daemon=True).start()
    target = Target(f"http://127.0.0.1:{port}/", "127.0.0.1", port,
                    ipaddress.ip_address("127.0.0.1"))
    try:
        outcome = post(target, b"{}", {}, timeout_s=1.5)
    finally:
        done.set()
        listener.close()
    assert not outcome.delivered and outcome.status_code is None
    assert outcome.error == "no answer within 1.5 s"
    assert outcome.duration_ms < 3000
