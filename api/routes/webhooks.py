"""Webhooks: the owner's signing secret (shown once) and each job's delivery attempts."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service import jobs, webhook_secrets, webhooks
from service.db import retrying
from service.errors import NotFound

from ..deps import OwnerDep, SessionDep, SettingsDep
from ..schemas import (
    WebhookAttemptPublic,
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookSecretCreated,
    WebhookSecretPublic,
)

router = APIRouter(tags=["webhooks"])


@router.post("/v1/webhook-secret", status_code=201, response_model=WebhookSecretCreated,
             operation_id="create_webhook_secret",
             summary="A new webhook signing secret, shown once (replaces the current one)")
def create_webhook_secret(session: SessionDep, settings: SettingsDep, owner: OwnerDep,
                          response: Response) -> WebhookSecretCreated:
    """Every webhook event of this owner's jobs is signed with this secret from now on; an
    earlier secret stops signing at once. Keep it: it is not shown again. 503
    ``webhooks-not-configured`` when the operator has not set ``DVRL_WEBHOOK_KEY``."""
    secret, created = retrying(session, lambda: webhook_secrets.rotate(session, owner, settings))
    response.headers["Cache-Control"] = "no-store"  # a secret: no cache or proxy keeps it
    return WebhookSecretCreated(secret=secret, created_at=created)


@router.get("/v1/webhook-secret", response_model=WebhookSecretPublic,
            operation_id="get_webhook_secret",
            summary="When the current webhook secret was made (never the secret)")
def get_webhook_secret(session: SessionDep, owner: OwnerDep,
                       settings: SettingsDep) -> WebhookSecretPublic:
    """404 where the owner has made none yet; 503 ``webhooks-not-configured`` (as the POST
    answers) where there is none and webhooks are off on this service."""
    created = webhook_secrets.created_at(session, owner)
    if created is None:
        webhook_secrets.signing_key(settings)  # off: no POST would make one
        raise NotFound("no webhook secret yet: POST /v1/webhook-secret makes one")
    try:
        webhook_secrets.secret_for(session, owner, settings)
    except webhook_secrets.SecretUnusable as exc:  # the service key changed since, say
        return WebhookSecretPublic(created_at=created, usable=False, reason=str(exc))
    return WebhookSecretPublic(created_at=created, usable=True)


@router.get("/v1/jobs/{job_id}/deliveries", response_model=WebhookDeliveriesPublic,
            operation_id="list_deliveries",
            summary="The job's webhook events and every attempt to deliver them")
def list_deliveries(job_id: str, session: SessionDep, owner: OwnerDep) -> WebhookDeliveriesPublic:
    """Oldest event first (at most three progress events and one final event per job), each
    with its attempts in order; empty for a job without ``notify``."""
    jobs.get_job(session, job_id, owner)
    items = [WebhookDeliveryPublic(
        id=d.id, type=d.type, url=d.url, state=d.state,
        created_at=d.created_at, next_attempt_at=d.due_at, give_up_at=d.give_up_at,
        attempts=[WebhookAttemptPublic(number=a.number, started_at=a.started_at,
                                       duration_ms=a.duration_ms, status_code=a.status_code,
                                       error=a.error) for a in attempts])
        for d, attempts in webhooks.list_deliveries(session, job_id)]
    return WebhookDeliveriesPublic(items=items)
