"""The webhook API on the real PostgreSQL: the secret shown once, refused URLs and targets at
submit, owner-scoped deliveries; the cancel of a queued job sends its event through the real
sender code to a real receiver."""

from __future__ import annotations

import pytest

from service import webhook_secrets, webhooks
from service.settings import get_settings
from tests.webhooks.conftest import tiny_job


def _secret(client) -> str:
    response = client.post("/v1/webhook-secret")
    assert response.status_code == 201, response.text
    return response.json()["secret"]


def test_the_secret_is_shown_once_and_a_new_one_replaces_it(client):
    assert client.get("/v1/webhook-secret").status_code == 404
    first = client.post("/v1/webhook-secret")
    assert first.status_code == 201 and first.headers["cache-control"] == "no-store"
    secret = first.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    shown = client.get("/v1/webhook-secret")
    assert shown.status_code == 200 and secret not in shown.text
    assert shown.json() == {"created_at": first.json()["created_at"], "usable": True,
                            "reason": None}
    second = _secret(client)
    assert second != secret


@pytest.mark.parametrize("earlier", [False, True], ids=["first secret", "rotation"])
def test_secrets_asked_for_at_the_same_moment_are_each_made_and_the_last_signs(client,
                                                                               earlier):
    """Eight POSTs at once: each a 201 (half were 500s: a delete and an insert raced on the
    owner's row), and the secret kept is one of those shown."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from service.db import session_scope

    if earlier:
        _secret(client)
    barrier = Barrier(8)

    def ask(_):
        barrier.wait()
        return client.post("/v1/webhook-secret")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    with session_scope() as session:
        kept = webhook_secrets.secret_for(session, "alice", get_settings())
    shown = {a.json()["secret"] for a in answers}
    assert len(shown) == 8 and kept in shown
    assert client.get("/v1/webhook-secret").json()["usable"] is True


def test_a_secret_made_with_another_service_key_is_said_to_be_unusable(client, monkeypatch):
    """It was reported as a working secret while every job with notify was refused."""
    _secret(client)
    monkeypatch.setenv("DVRL_WEBHOOK_KEY", "another-service-key-of-32-characters-or-more")
    get_settings.cache_clear()
    shown = client.get("/v1/webhook-secret").json()
    assert shown["usable"] is False
    assert shown["reason"].startswith("DVRL_WEBHOOK_KEY changed since the owner's secret was "
                                      "made")
    _secret(client)  # a new one is usable again
    assert client.get("/v1/webhook-secret").json()["usable"] is True


def test_the_database_holds_no_secret(client):
    from sqlalchemy import text

    from service.db import get_engine

    secret = _secret(client)
    with get_engine().connect() as connection:
        rows = connection.execute(text("SELECT * FROM webhook_secrets")).all()
    assert rows and all(secret not in str(value) and secret[6:] not in str(value)
                        for row in rows for value in row)


def test_owners_have_their_own_secrets(client, other_client):
    assert _secret(client) != _secret(other_client)


def test_without_a_service_key_webhooks_are_off_and_say_so(client, tables, monkeypatch):
    monkeypatch.delenv("DVRL_WEBHOOK_KEY")
    get_settings.cache_clear()
    response = client.post("/v1/webhook-secret")
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/webhooks-not-configured"
    assert "DVRL_WEBHOOK_KEY" in response.json()["detail"]
    # GET said "no webhook secret yet: POST /v1/webhook-secret makes one" (a 404)
    shown = client.get("/v1/webhook-secret")
    assert shown.status_code == 503
    assert shown.json()["type"] == "/problems/webhooks-not-configured"


def test_a_job_with_a_webhook_needs_a_secret_first(client, tables, receiver_factory):
    receiver = receiver_factory()
    train, valid = tables
    from tests.conftest import upload

    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "notify": {"url": receiver.url}}
    refused = client.post("/v1/jobs", json=spec)
    assert refused.status_code == 422
    assert refused.json()["type"] == "/problems/webhook-secret-missing"
    assert "POST /v1/webhook-secret" in refused.json()["detail"]
    _secret(client)
    job = client.post("/v1/jobs", json=spec)
    assert job.status_code == 202, job.text
    assert job.json()["spec"]["notify"] == {"url": receiver.url, "events": ["job.finished"]}
    assert job.json()["links"]["deliveries"] == f"/v1/jobs/{job.json()['id']}/deliveries"


@pytest.mark.parametrize("notify", [
    {"url": "ftp://example.com/hook"}, {"url": "http://"}, {"url": "example.com/hook"},
    {"url": "http://user:secret@example.com/hook"}, {"url": "http://127.0.0.1:70000/"},
    {"url": "https://example.com/", "events": ["job.started"]},
    {"url": "https://example.com/", "events": []}, {"url": "https://example.com/", "x": 1}])
def test_a_malformed_webhook_is_a_422_naming_the_field(client, tables, notify):
    _secret(client)
    response = client.post("/v1/jobs", json={"dataset_id": "x", "target": "label",
                                             "validation": {"fraction": 0.2}, "notify": notify})
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "/problems/validation-error"
    assert any(e["field"].startswith("notify") for e in body["errors"]), body


@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://169.254.169.254/latest",
                                 "http://[::1]:8000/", "http://[::ffff:127.0.0.1]/",
                                 "http://127.0.0.2:8000/", "http://100.64.0.1/",
                                 "http://0.0.0.0:8000/", "https://no-such-host.invalid/"])
def test_private_and_unresolvable_targets_are_refused_at_submit(client, tables, url):
    _secret(client)
    train, valid = tables
    from tests.conftest import upload

    response = client.post("/v1/jobs", json={
        "dataset_id": upload(client, train), "target": "label",
        "validation": {"dataset_id": upload(client, valid)}, "notify": {"url": url}})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "/problems/webhook-url-refused"
    assert body["errors"][0]["field"] == "notify.url"
    assert client.get("/v1/jobs").json()["items"] == []  # nothing was queued


def test_deliveries_are_the_owners_only(client, other_client, tables, receiver_factory):
    _secret(client)
    plain = tiny_job(client, tables, None)
    hooked = tiny_job(client, tables, {"url": receiver_factory().url})
    assert client.get(f"/v1/jobs/{plain['id']}/deliveries").json() == {"items": []}
    assert client.get(f"/v1/jobs/{hooked['id']}/deliveries").status_code == 200
    assert other_client.get(f"/v1/jobs/{hooked['id']}/deliveries").status_code == 404
    assert client.get("/v1/jobs/no-such-job/deliveries").status_code == 404


def test_a_queued_job_cancelled_sends_its_signed_event(client, tables, receiver_factory):
    """No worker runs: the API ends the queued job and writes its event in that transaction;
    the sender (the code workers run) delivers it."""
    secret = _secret(client)
    receiver = receiver_factory()
    job = tiny_job(client, tables, {"url": receiver.url})
    assert client.post(f"/v1/jobs/{job['id']}:cancel").json()["state"] == "CANCELLED"
    (pending,) = client.get(f"/v1/jobs/{job['id']}/deliveries").json()["items"]
    assert pending["state"] == "PENDING" and pending["attempts"] == []
    assert receiver.received == []  # the API sent nothing itself

    assert webhooks.deliver_one(get_settings())
    (event,) = receiver.verified(secret)
    assert event["type"] == "job.finished" and event["id"] == pending["id"]
    assert event["job"]["id"] == job["id"] and event["job"]["state"] == "CANCELLED"
    assert event["job"]["summary"] is None and "values" not in event["job"]["links"]
    assert receiver.received[0].headers["dvrl-event-id"] == pending["id"]
    (delivered,) = client.get(f"/v1/jobs/{job['id']}/deliveries").json()["items"]
    assert delivered["state"] == "DELIVERED" and delivered["next_attempt_at"] is None
    assert [(a["number"], a["status_code"], a["error"]) for a in delivered["attempts"]] == [
        (1, 200, None)]
    assert not webhooks.deliver_one(get_settings())  # nothing is due any more


def test_the_openapi_documents_the_routes_with_their_models(client):
    paths = client.get("/openapi.json").json()["paths"]
    listed = paths["/v1/jobs/{job_id}/deliveries"]["get"]
    assert listed["operationId"] == "list_deliveries"
    assert listed["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/WebhookDeliveriesPublic")
    created = paths["/v1/webhook-secret"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/WebhookSecretCreated")


def test_a_job_whose_workers_keep_dying_reports_failed(client, tables, receiver_factory):
    """The sweeper ends such a job FAILED (no worker runs it to its end): the event is written
    in that transaction too."""
    from datetime import timedelta

    from sqlalchemy import update

    from service import jobs
    from service.db import session_scope
    from service.models import Job

    secret = _secret(client)
    receiver = receiver_factory()
    job = tiny_job(client, tables, {"url": receiver.url})
    settings = get_settings()
    with session_scope() as session:  # as a worker that died on the last attempt leaves it
        stamp = jobs.db_now(session)
        session.execute(update(Job).where(Job.id == job["id"]).values(
            state="RUNNING", attempts=settings.max_attempts, lease_holder="gone:1:x",
            lease_expires_at=stamp - timedelta(seconds=1)))
    with session_scope() as session:
        assert jobs.fail_exhausted(session, settings, jobs.db_now(session)) == 1

    assert webhooks.deliver_one(settings)
    (event,) = receiver.verified(secret)
    assert event["job"]["state"] == "FAILED"
    assert event["job"]["error"]["type"] == "/problems/workers-died"
