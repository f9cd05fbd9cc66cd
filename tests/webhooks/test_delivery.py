"""Webhooks end to end: jobs through the API on the real PostgreSQL and Redis, run by real
``dvrl worker`` processes, whose events reach a real receiver on 127.0.0.1 that checks each
signature with the README's code."""

from __future__ import annotations

import os
import signal

from service.webhooks import ABANDONED
from tests.conftest import wait_for
from tests.webhooks.conftest import ALLOWED, FAST_RETRIES, tiny_job, wait_deliveries


def _secret(client) -> str:
    return client.post("/v1/webhook-secret").json()["secret"]


def _settled(items) -> bool:
    return bool(items) and all(d["state"] != "PENDING" for d in items)


def test_a_finished_job_posts_signed_events_to_the_receiver(client, tables, workers,
                                                            receiver_factory):
    secret = _secret(client)
    receiver = receiver_factory()
    workers.start(**ALLOWED, **FAST_RETRIES)
    job = tiny_job(client, tables, {"url": receiver.url,
                                    "events": ["job.finished", "job.progress"]},
                   label_noise=0.2)
    assert wait_for(client, job["id"])["state"] == "SUCCEEDED"
    items = wait_deliveries(client, job["id"], lambda d: len(d) == 4 and _settled(d))

    events = receiver.verified(secret)  # each signature checked by the README's verify()
    assert len(events) == 4
    progress = sorted(e["job"]["progress"]["percent"] for e in events
                      if e["type"] == "job.progress")
    assert progress == [25, 50, 75]
    (finished,) = [e for e in events if e["type"] == "job.finished"]
    assert finished["job"]["id"] == job["id"] and finished["job"]["state"] == "SUCCEEDED"
    assert finished["job"]["summary"]["rows"] == 360
    assert finished["job"]["summary"]["label_noise"]["flipped"] == 72
    assert finished["job"]["links"]["values"] == f"/v1/jobs/{job['id']}/values"
    assert "owner" not in str(events) and "alice" not in str(events)
    assert client.get(finished["job"]["links"]["values"]).status_code == 200  # links work
    shown = client.get(f"/v1/jobs/{job['id']}").json()  # the same times, written the same way
    assert [finished["job"][k] for k in ("created_at", "started_at", "finished_at")] == \
        [shown[k] for k in ("created_at", "started_at", "finished_at")]
    assert finished["job"]["finished_at"].endswith("Z")
    assert {d["id"] for d in items} == {e["id"] for e in events}
    assert all(d["state"] == "DELIVERED" and len(d["attempts"]) == 1
               and d["attempts"][0]["status_code"] == 200 for d in items)


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(client, tables, workers,
                                                                      receiver_factory):
    secret = _secret(client)
    receiver = receiver_factory(statuses=(500, 500))
    workers.start(**ALLOWED, **FAST_RETRIES)
    job = tiny_job(client, tables, {"url": receiver.url})
    assert wait_for(client, job["id"])["state"] == "SUCCEEDED"
    (delivery,) = wait_deliveries(client, job["id"], _settled)

    assert delivery["state"] == "DELIVERED"
    assert [(a["number"], a["status_code"], a["error"]) for a in delivery["attempts"]] == [
        (1, 500, "the receiver answered 500"), (2, 500, "the receiver answered 500"),
        (3, 200, None)]
    starts = [a["started_at"] for a in delivery["attempts"]]
    assert starts == sorted(starts) and all(a["duration_ms"] >= 0 for a in delivery["attempts"])
    events = receiver.verified(secret)  # each attempt signed, the same event
    assert len(events) == 3 and {e["id"] for e in events} == {delivery["id"]}


def test_a_target_the_worker_refuses_is_never_contacted(client, tables, workers,
                                                        receiver_factory):
    """The API allowed 127.0.0.1 at submit; the worker's policy does not (as when a host's DNS
    answer turns private after submission): every attempt is refused before connecting."""
    _secret(client)
    receiver = receiver_factory()
    workers.start(**FAST_RETRIES | {"DVRL_WEBHOOK_ALLOWED_HOSTS": "",
                                    "DVRL_WEBHOOK_RETRY_FOR_S": "3"})
    job = tiny_job(client, tables, {"url": receiver.url})
    assert wait_for(client, job["id"])["state"] == "SUCCEEDED"
    (delivery,) = wait_deliveries(client, job["id"], _settled)

    assert delivery["state"] == "FAILED" and delivery["next_attempt_at"] is None
    assert len(delivery["attempts"]) >= 2  # retried until it gave up
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("not sent: 127.0.0.1 resolves to 127.0.0.1, a "
                                           "loopback address")
    assert receiver.received == []


def test_a_delivery_in_flight_when_its_worker_is_killed_is_delivered_after_a_restart(
        client, tables, workers, receiver_factory):
    secret = _secret(client)
    receiver = receiver_factory(hold_first=True)
    settings = ALLOWED | FAST_RETRIES | {"DVRL_WEBHOOK_TIMEOUT_S": "3"}  # claim: 14 s
    first = workers.start(**settings)
    job = tiny_job(client, tables, {"url": receiver.url})
    assert receiver.first_arrived.wait(timeout=180), workers.log()
    os.kill(first.pid, signal.SIGKILL)  # while the receiver holds its request
    first.wait(timeout=30)
    receiver.release()
    (pending,) = client.get(f"/v1/jobs/{job['id']}/deliveries").json()["items"]
    assert pending["state"] == "PENDING"
    assert [(a["status_code"], a["error"]) for a in pending["attempts"]] == [(None, None)]

    workers.start(**settings)
    (delivery,) = wait_deliveries(client, job["id"], _settled)
    assert delivery["state"] == "DELIVERED"
    assert [(a["number"], a["status_code"], a["error"]) for a in delivery["attempts"]] == [
        (1, None, ABANDONED), (2, 200, None)]
    events = receiver.verified(secret)
    assert [e["id"] for e in events] == [delivery["id"]] * 2  # the same event, sent again
    assert events[0]["job"]["state"] == "SUCCEEDED"


def test_a_receiver_that_does_not_answer_holds_up_only_its_own_events(client, tables, workers,
                                                                      receiver_factory):
    """A worker sent one event at a time: an event to another receiver waited out every
    attempt to the silent one (13.5 s late behind five of them in a probe; here the attempt's
    timeout is a minute)."""
    secret = _secret(client)
    silent = receiver_factory(hold_first=True)  # takes the first request and does not answer
    fine = receiver_factory()
    workers.start(**ALLOWED, **(FAST_RETRIES | {"DVRL_WEBHOOK_TIMEOUT_S": "60"}))
    first = tiny_job(client, tables, {"url": silent.url})
    assert silent.first_arrived.wait(120)
    second = tiny_job(client, tables, {"url": silent.url}, seed=1)
    other = tiny_job(client, tables, {"url": fine.url}, seed=2)
    for job in (second, other):
        assert wait_for(client, job["id"])["state"] == "SUCCEEDED"

    # the other receiver has its event while the silent one still holds the first
    assert fine.wait_for(1, timeout=40)[0].event["job"]["id"] == other["id"]
    (held,) = client.get(f"/v1/jobs/{first['id']}/deliveries").json()["items"]
    assert held["state"] == "PENDING" and held["attempts"][0]["status_code"] is None
    # one attempt at a time to an address: the silent one's second event waits its turn
    (waiting,) = client.get(f"/v1/jobs/{second['id']}/deliveries").json()["items"]
    assert waiting["state"] == "PENDING" and waiting["attempts"] == []

    silent.release()
    for job in (first, second):
        wait_deliveries(client, job["id"], lambda d: _settled(d))
    assert {e["job"]["id"] for e in silent.verified(secret)} == {first["id"], second["id"]}
