"""Each owner's webhook signing secret: shown once, at creation; rotated by creating another.

The service must be able to sign with the secret later, so it cannot keep only a hash of it
(as it does for API keys). Nor does it store the secret: a secret is derived,
``whsec_`` + base64url(HMAC-SHA256(service key, owner + salt)), from a service key that lives in
the environment (``DVRL_WEBHOOK_KEY``, the same on the API and every worker) and a random salt
per owner that lives in the database. A copy of the database alone yields no secret; a new salt
(rotation) yields a new secret and the old one stops signing at once. The embedded default,
whose API and worker are one process, makes a service key in ``DVRL_DATA_DIR`` when none is
set; a PostgreSQL + Celery deployment, whose processes share no disk, has webhooks off until it
is set. Each salt records which service key it was made with (a short HMAC of the key), so a
changed key is reported rather than used to sign with a secret its owner has never seen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .errors import ServiceError
from .models import WebhookSecret, utcnow
from .settings import MIN_WEBHOOK_KEY, Settings

PREFIX = "whsec_"
KEY_FILE = "webhook.key"


class WebhooksNotConfigured(ServiceError):
    slug, status, title = "webhooks-not-configured", 503, "Webhooks not configured"


class WebhookSecretMissing(ServiceError):
    """A job asks for a webhook but its owner has no usable secret to sign it with."""

    slug, status, title = "webhook-secret-missing", 422, "No webhook secret"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errors = [{"field": "notify", "message": message}]


class SecretUnusable(Exception):
    """The secret cannot be derived here (no service key, or a different one); a delivery
    attempt records the message and is retried."""


def service_key(settings: Settings) -> bytes | None:
    """The key secrets are derived from: ``DVRL_WEBHOOK_KEY``; in embedded mode, one kept in
    ``DATA_DIR`` (made on first use); else None (webhooks are off)."""
    if settings.webhook_key:
        return settings.webhook_key.encode()
    if settings.embedded:
        return _key_file(settings.data_dir.resolve())
    return None


def signing_key(settings: Settings) -> bytes:
    """:func:`service_key`, or 503 ``webhooks-not-configured`` where webhooks are off."""
    key = service_key(settings)
    if key is None:
        raise WebhooksNotConfigured("webhooks are off on this service: its operator has not set "
                                    "DVRL_WEBHOOK_KEY on the API and the workers")
    return key


@lru_cache(maxsize=4)
def _key_file(data_dir: Path) -> bytes:
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # written whole under another name, then linked into place: a concurrent creator's
        # link fails and it reads the winner's key, never a file that is still empty
        made = data_dir / f".{KEY_FILE}.{secrets.token_hex(8)}"
        descriptor = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:  # readable by this user only
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(made, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links (vfat, some network mounts)
            if not path.exists():
                os.replace(made, path)
        finally:
            made.unlink(missing_ok=True)
    key = path.read_bytes().strip()
    if len(key) < MIN_WEBHOOK_KEY:  # an emptied or hand-written file: a guessable key
        raise WebhooksNotConfigured(
            f"{path} holds a key of {len(key)} characters, under the {MIN_WEBHOOK_KEY} a "
            "service key needs: delete it (a new one is made; owners then create new webhook "
            "secrets) or set DVRL_WEBHOOK_KEY")
    return key


def _key_check(key: bytes) -> str:
    return hmac.new(key, b"dvrl webhook key check", hashlib.sha256).hexdigest()[:16]


def _derive(key: bytes, owner: str, salt: str) -> str:
    digest = hmac.new(key, f"{owner}\x1f{salt}".encode(), hashlib.sha256).digest()
    return PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def rotate(session: Session, owner: str, settings: Settings) -> tuple[str, datetime]:
    """A new secret for ``owner`` (replacing any earlier one, which stops signing now); returns
    it, to be shown once, and its creation time. Rotations at the same moment each get a
    secret; the one committed last signs (a delete and an insert raced: a 500 for half of
    them)."""
    key = signing_key(settings)
    values = {"salt": secrets.token_hex(16), "key_check": _key_check(key), "created_at": utcnow()}
    for attempt in range(2):
        replaced = session.execute(update(WebhookSecret).where(WebhookSecret.owner == owner)
                                   .values(**values)).rowcount
        if not replaced:
            session.add(WebhookSecret(owner=owner, **values))
        try:
            session.commit()
            break
        except IntegrityError:  # another request made the owner's first secret meanwhile
            session.rollback()  # (its row is there now: the second attempt replaces it)
            if attempt:
                raise
    return _derive(key, owner, values["salt"]), values["created_at"]


def created_at(session: Session, owner: str) -> datetime | None:
    row = session.get(WebhookSecret, owner)
    return None if row is None else row.created_at


def secret_for(session: Session, owner: str, settings: Settings) -> str:
    """The owner's current secret, to sign with; SecretUnusable says why there is none."""
    row = session.get(WebhookSecret, owner)
    if row is None:
        raise SecretUnusable("the owner has no webhook secret (POST /v1/webhook-secret)")
    try:
        key = service_key(settings)
    except WebhooksNotConfigured as exc:  # the embedded key file is unusable
        raise SecretUnusable(str(exc)) from exc
    if key is None:
        raise SecretUnusable("DVRL_WEBHOOK_KEY is not set here (the API and every worker need "
                             "the same one)")
    if not hmac.compare_digest(row.key_check, _key_check(key)):
        raise SecretUnusable("DVRL_WEBHOOK_KEY changed since the owner's secret was made: the "
                             "owner must create a new secret (POST /v1/webhook-secret)")
    return _derive(key, owner, row.salt)


def require(session: Session, owner: str, settings: Settings) -> None:
    """Refuse a job that asks for a webhook its owner cannot verify (422), or one this
    service cannot sign (503)."""
    key = signing_key(settings)
    row = session.get(WebhookSecret, owner)
    if row is None or not hmac.compare_digest(row.key_check, _key_check(key)):
        why = "no webhook secret yet" if row is None else \
            "the webhook secret was made with another service key"
        raise WebhookSecretMissing(f"{why}: create one with POST /v1/webhook-secret (shown "
                                   "once; every event is signed with it)")
