"""Delivering webhook events: signed, retried with exponential backoff, every attempt recorded.

Events wait in the database (``webhook_deliveries``, written by service.webhook_events with the
job change they report), each with the time it is due. A ``WebhookSender`` thread runs in every
process that runs jobs (each Celery worker, and the embedded service beside its worker thread):
it claims a due event with one conditional UPDATE that takes a short claim (so one sender sends
it at a time), records the attempt's start, sends it, and records the outcome and the next due
time. Each sender runs ``WEBHOOK_SENDERS`` such loops side by side, and an event is not claimed
while another event to the same URL is being attempted: a receiver that answers slowly, or not
at all, holds up its own events only. A job's own events go out at once (the runner wakes its
process's sender); others, and events whose sender died mid-attempt (its claim runs out), are
found by the next poll of any sender (``DVRL_WEBHOOK_POLL_S``). Nothing is sent from the API
process of a Celery deployment, and nothing here runs in a request.

Delivery is at least once: a sender that dies after the receiver answered but before the outcome
was recorded sends the event again, with the same event id (``DVRL-Event-Id``), by which a
receiver drops duplicates.

Each attempt is signed afresh: ``DVRL-Signature: t=<unix seconds>,v1=<hex>``, where ``hex`` is
HMAC-SHA256 keyed with the owner's secret (UTF-8) over ``f"{t}."`` followed by the body's bytes.
A 2xx answer delivers the event; anything else (another status, a redirect, no answer, a refused
address) is a failed attempt, retried after ``WEBHOOK_BACKOFF_S``, doubling up to
``WEBHOOK_BACKOFF_MAX_S`` (plus up to 10% jitter), until ``WEBHOOK_RETRY_FOR_S`` after the event
was made; then it ends FAILED.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from . import webhook_secrets
from .db import session_scope
from .jobs import db_now
from .models import WebhookAttempt, WebhookDelivery
from .settings import Settings, get_settings
from .webhook_targets import Outcome, TargetRefused, post, resolve

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "DVRL-Signature"
SENDER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
ABANDONED = "no outcome recorded: the sender stopped during the attempt"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``DVRL-Signature`` header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def claim_seconds(settings: Settings) -> float:
    """How long a sender holds an event: long enough for one attempt (its connect, send and
    answer each have the timeout), short enough that another takes over soon if it died."""
    return 3 * settings.webhook_timeout_s + 5


@dataclass(frozen=True)
class Claimed:
    """An event a sender has claimed for one attempt."""

    id: str
    type: str
    url: str
    body: bytes
    number: int
    secret: str | None
    secret_problem: str | None


def _due(stamp: datetime):
    return and_(WebhookDelivery.state == "PENDING", WebhookDelivery.due_at <= stamp,
                or_(WebhookDelivery.claimed_until.is_(None),
                    WebhookDelivery.claimed_until < stamp))


def _address_free(stamp: datetime):
    """No other event to the same URL is being attempted (its claim still runs)."""
    other = aliased(WebhookDelivery)
    return ~exists().where(other.url == WebhookDelivery.url, other.id != WebhookDelivery.id,
                           other.state == "PENDING", other.claimed_until >= stamp)


def claim(session: Session, settings: Settings, holder: str = SENDER_ID) -> Claimed | None:
    """Claim the event due longest, start its next attempt's record and commit; None when
    nothing is due. An earlier attempt left without an outcome is marked abandoned."""
    stamp = db_now(session)
    while True:
        candidate = session.scalar(select(WebhookDelivery.id)
                                   .where(_due(stamp), _address_free(stamp))
                                   .order_by(WebhookDelivery.due_at).limit(1))
        if candidate is None:
            session.rollback()
            return None
        taken = session.execute(update(WebhookDelivery).where(  # type: ignore[attr-defined]
            WebhookDelivery.id == candidate, _due(stamp)).values(
            claimed_by=holder, attempts=WebhookDelivery.attempts + 1,
            claimed_until=stamp + timedelta(seconds=claim_seconds(settings)))).rowcount
        if taken:
            break
        session.rollback()  # another sender took it first
    delivery = session.execute(select(WebhookDelivery).where(
        WebhookDelivery.id == candidate)).scalar_one()
    session.execute(update(WebhookAttempt).where(
        WebhookAttempt.delivery_id == delivery.id, WebhookAttempt.duration_ms.is_(None),
        WebhookAttempt.status_code.is_(None), WebhookAttempt.error.is_(None)).values(
        error=ABANDONED))
    session.add(WebhookAttempt(delivery_id=delivery.id, number=delivery.attempts,
                               started_at=stamp))
    secret, problem = None, None
    try:
        secret = webhook_secrets.secret_for(session, delivery.owner, settings)
    except webhook_secrets.SecretUnusable as exc:
        problem = str(exc)
    session.commit()
    return Claimed(delivery.id, delivery.type, delivery.url, delivery.body.encode(),
                   delivery.attempts, secret, problem)


def attempt(claimed: Claimed, settings: Settings) -> Outcome:
    """Check the destination again (DNS may have changed), sign and send; never raises."""
    if claimed.secret is None:
        return Outcome(None, f"not sent: {claimed.secret_problem}", 0)
    try:
        target = resolve(claimed.url, settings)
    except TargetRefused as exc:
        return Outcome(None, f"not sent: {exc}", 0)
    headers = {"Content-Type": "application/json", "User-Agent": "dvrl-webhooks/1",
               "DVRL-Event-Id": claimed.id, "DVRL-Event-Type": claimed.type,
               SIGNATURE_HEADER: sign(claimed.secret, claimed.body, int(time.time()))}
    return post(target, claimed.body, headers, settings.webhook_timeout_s)


def backoff_seconds(number: int, settings: Settings) -> float:
    """The wait after failed attempt ``number`` (1-based): doubling, capped, 0-10% jitter."""
    base = min(settings.webhook_backoff_s * 2 ** min(number - 1, 60),
               settings.webhook_backoff_max_s)
    return base * random.uniform(1.0, 1.1)


def record(session: Session, claimed: Claimed, outcome: Outcome, settings: Settings,
           holder: str = SENDER_ID) -> str:
    """Write the attempt's outcome and the event's next state; returns that state."""
    stamp = db_now(session)
    session.execute(update(WebhookAttempt).where(
        WebhookAttempt.delivery_id == claimed.id, WebhookAttempt.number == claimed.number)
        .values(duration_ms=outcome.duration_ms, status_code=outcome.status_code,
                error=outcome.error))
    give_up_at = session.scalar(select(WebhookDelivery.give_up_at).where(
        WebhookDelivery.id == claimed.id))
    due_at = None if outcome.delivered else \
        stamp + timedelta(seconds=backoff_seconds(claimed.number, settings))
    if outcome.delivered:
        state = "DELIVERED"
    elif give_up_at is None or due_at is None or due_at > _aware(give_up_at):
        state, due_at = "FAILED", None
    else:
        state = "PENDING"
    session.execute(update(WebhookDelivery).where(
        WebhookDelivery.id == claimed.id, WebhookDelivery.claimed_by == holder,
        WebhookDelivery.state == "PENDING").values(
        state=state, due_at=due_at, claimed_by=None, claimed_until=None))
    session.commit()
    return state


def deliver_one(settings: Settings, holder: str = SENDER_ID) -> bool:
    """Make one attempt at the event due longest; False when nothing is due."""
    with session_scope() as session:
        claimed = claim(session, settings, holder)
    if claimed is None:
        return False
    try:
        outcome = attempt(claimed, settings)
    except Exception as exc:  # a bug: record it as the attempt's failure, keep the schedule
        log.exception("webhook %s: attempt failed unexpectedly", claimed.id)
        outcome = Outcome(None, f"not sent: internal error ({type(exc).__name__})", 0)
    with session_scope() as session:
        state = record(session, claimed, outcome, settings, holder)
    level = logging.INFO if outcome.delivered else logging.WARNING
    log.log(level, "webhook %s attempt %d: %s (%s)", claimed.id, claimed.number,
            outcome.status_code or "no answer", state if outcome.delivered else outcome.error)
    return True


def seconds_until_due(settings: Settings) -> float | None:
    """How long until the next pending event can be claimed (None: none is pending)."""
    with session_scope() as session:
        claimable = case((WebhookDelivery.claimed_until > WebhookDelivery.due_at,
                          WebhookDelivery.claimed_until), else_=WebhookDelivery.due_at)
        earliest = session.scalar(select(func.min(claimable)).where(
            WebhookDelivery.state == "PENDING"))
        if earliest is None:
            return None
        return (_aware(earliest) - db_now(session)).total_seconds()


class WebhookSender:
    """Sends due events from ``WEBHOOK_SENDERS`` daemon threads; ``wake()`` starts a round at
    once."""

    def __init__(self, settings: Settings, batch: int = 100) -> None:
        self.settings = settings
        self.batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=f"dvrl-webhooks-{i}",
                                          daemon=True)
                         for i in range(settings.webhook_senders)]

    def start(self) -> WebhookSender:
        with _lock:
            _senders.add(self)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        with _lock:
            _senders.discard(self)
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        poll = self.settings.webhook_poll_s
        while not self._stop.is_set():
            wait = poll
            try:
                sent = 0
                while sent < self.batch and not self._stop.is_set() and \
                        deliver_one(self.settings):
                    sent += 1
                due = seconds_until_due(self.settings)
                # due already and none claimed: their address is busy, and the end of its
                # attempt wakes this sender (else every thread would ask five times a second)
                if due is not None and (sent or due > 0):
                    wait = min(poll, due)
                if sent:
                    self._wake.set()  # an address is free again: the other threads look
            except Exception:  # the database is away or a bug: the next round tries again
                log.warning("webhook sender: round failed", exc_info=True)
            self._wake.wait(timeout=max(wait, 0.2))
            self._wake.clear()


_senders: set[WebhookSender] = set()
_lock = threading.Lock()


def wake() -> None:
    """Have this process's senders look for due events now (a job of theirs just made one)."""
    with _lock:
        for sender in _senders:
            sender.wake()


def start_sender(settings: Settings | None = None) -> WebhookSender:
    return WebhookSender(settings or get_settings()).start()


def list_deliveries(session: Session, job_id: str) -> list[tuple[WebhookDelivery,
                                                                 list[WebhookAttempt]]]:
    """A job's events, oldest first, each with its attempts in order."""
    deliveries = list(session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at,
                                                   WebhookDelivery.event)))
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for row in session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_(list(attempts))).order_by(
                WebhookAttempt.number)):
            attempts[row.delivery_id].append(row)
    return [(d, attempts[d.id]) for d in deliveries]
