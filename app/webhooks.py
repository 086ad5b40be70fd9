"""The webhook endpoint: verify, deduplicate, record, answer. No outbound calls.

The order of checks is deliberate: size first (cheap, before reading), then the signature over
the raw bytes (nothing unauthenticated is parsed), then the headers and the JSON. A signed
delivery of any shape gets a 4xx or a 2xx: what cannot be read is refused with a message saying
why, and a payload whose fields are not what GitHub sends is recorded and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

from flask import Blueprint, current_app, jsonify, request

from app.events import Intake, action_of, outcome_of_delivery
from app.payload import BadBody, MalformedPayload, payload_from_body
from app.buttons import ButtonPress
from app.store import Duplicate, InstallationChange, NewTask

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
# Both headers are stored and logged, so they are bounded. GitHub's event names are short words
# and its delivery ids 36-character UUIDs.
MAX_EVENT_CHARS = 100
MAX_GUID_CHARS = 200
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")

log = logging.getLogger(__name__)
blueprint = Blueprint("webhooks", __name__)


def signature_is_valid(secret: str, body: bytes, header: str | None) -> bool:
    # compare_digest refuses non-ASCII strings with a TypeError; such a header is simply wrong.
    if not secret or not header or not header.isascii() or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def header_problem(name: str, value: str | None, max_chars: int) -> str | None:
    """Why a delivery header cannot be used, or None when it can."""
    if not value:
        return f"missing {name} header"
    if len(value) > max_chars:
        return f"{name} is longer than {max_chars} characters"
    if not _VISIBLE_ASCII.fullmatch(value):
        return f"{name} has characters other than visible ASCII"
    return None


def too_large():
    return _answer(413, "payload larger than 25 MB")


def _answer(status: int, message: str, **extra):
    return jsonify({"message": message, **extra}), status


@blueprint.post("/webhooks")
def receive():
    settings = current_app.config["SETTINGS"]
    store = current_app.config["STORE"]

    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return too_large()
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH also bounds chunked bodies
    if not signature_is_valid(settings.github_webhook_secret, body,
                              request.headers.get("X-Hub-Signature-256")):
        log.warning("rejected a delivery with a missing or bad signature")
        return _answer(401, "missing or invalid X-Hub-Signature-256")

    event = request.headers.get("X-GitHub-Event")
    guid = request.headers.get("X-GitHub-Delivery")
    problem = (header_problem("X-GitHub-Event", event, MAX_EVENT_CHARS)
               or header_problem("X-GitHub-Delivery", guid, MAX_GUID_CHARS))
    if problem:
        return _answer(400, problem)
    try:
        payload = payload_from_body(body)
    except BadBody as error:
        return _answer(400, str(error))

    malformed = None
    try:
        outcome = outcome_of_delivery(event, payload, Intake(
            slug=settings.github_app_slug, trigger_label=settings.trigger_label,
            app_id=int(settings.github_app_id) if settings.github_app_id.isdigit() else None))
    except MalformedPayload as error:
        outcome, malformed = None, str(error)
    change = outcome if isinstance(outcome, InstallationChange) else None
    press = outcome if isinstance(outcome, ButtonPress) else None
    task = outcome if isinstance(outcome, NewTask) else None
    recorded = store.record_delivery(guid, event, action_of(payload), task, installation=change,
                                     button=press)
    if isinstance(recorded, Duplicate):
        log.info("delivery %s ignored: %s", guid, recorded.value)
        return _answer(200, "duplicate delivery")
    if recorded is None:
        if event == "ping":
            return _answer(200, "pong")
        if malformed:
            log.info("delivery %s ignored: %s", guid, malformed)
            return _answer(200, "ignored", reason=malformed)
        if change:
            log.info("delivery %s: installation %s %s%s", guid, change.installation_id,
                     change.action, f" ({len(change.repos)} repositories)" if change.repos else "")
            return _answer(200, "recorded")
        return _answer(200, "ignored")
    log.info("delivery %s: task %s for %s#%s by %s", guid, recorded.id, recorded.repo,
             recorded.number, recorded.requested_by)
    current_app.config["ON_TASK_RECORDED"]()
    return _answer(202, "task recorded", task_id=recorded.id)
