"""The inbound endpoint for replies: a raw RFC 822 message in, what became of it out.

For mail providers' inbound webhooks and mail servers that pipe mail to a URL. It is
authenticated by bearer token (``ENGAGE_INBOUND_TOKEN``), not by a session, so it is exempt from
CSRF checks; everything it reads goes through :func:`engage.replies.ingest`, the one path every
reply takes.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from ..context import current_engage
from ..replies import INBOUND_MAX_BYTES, ingest
from .blueprint import CSRF_EXEMPT, blueprint

logger = logging.getLogger(__name__)


def _json(status: int, body: dict[str, Any], **headers: str) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


def _bearer_token() -> str | None:
    scheme, _sep, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _read_body(limit: int) -> bytes:
    # Read at most one byte more than allowed: a body sent without a Content-Length (chunked)
    # can still be too big, and must not be read whole to find out.
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = request.stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@blueprint.post("/inbound/replies")
def inbound_replies() -> Response:
    """Take a reply as a raw RFC 822 message in the request body.

    For mail providers' inbound webhooks and mail servers that pipe mail to a URL. The caller
    sends ``Authorization: Bearer <ENGAGE_INBOUND_TOKEN>``; any content type is accepted
    (``message/rfc822`` is the natural one). Answers ``200`` with
    ``{"status", "email_id", "party_id"}`` for every message it took, matched or not, and
    also for one it could not read (``"status": "unparseable"`` with a ``"reason"``): a sender
    should not retry those. ``401`` for a missing or wrong token, ``413`` above
    :data:`engage.replies.INBOUND_MAX_BYTES`, ``400`` for an empty body, ``404`` while no token is
    configured (the endpoint is off), and ``503`` when engage's database failed, which a
    sender should retry.
    """
    expected = current_app.config.get("ENGAGE_INBOUND_TOKEN")
    if not expected:
        return _json(404, {"error": "not found"})
    given = _bearer_token()
    if given is None or not hmac.compare_digest(given.encode(), str(expected).encode()):
        challenge = 'Bearer realm="engage"'
        if given is not None:
            challenge += ', error="invalid_token"'
        return _json(
            401, {"error": "a valid bearer token is required"}, **{"WWW-Authenticate": challenge}
        )
    too_large = _json(413, {"error": f"the message is larger than {INBOUND_MAX_BYTES} bytes"})
    if (request.content_length or 0) > INBOUND_MAX_BYTES:
        return too_large
    raw = _read_body(INBOUND_MAX_BYTES)
    if len(raw) > INBOUND_MAX_BYTES:
        return too_large
    if not raw.strip():
        return _json(400, {"error": "the request body must be a raw RFC 822 message"})
    try:
        outcome = ingest(raw, source="inbound")
    except SQLAlchemyError:
        current_engage.session.rollback()
        logger.exception("the inbound endpoint could not store a message")
        return _json(
            503,
            {"error": "the message could not be stored; try again later"},
            **{"Retry-After": "60"},
        )
    return _json(200, outcome.as_dict())


CSRF_EXEMPT.add("engage.inbound_replies")


def exempt_from_host_csrf(app: Flask) -> None:
    """Let the inbound endpoint through the host's Flask-WTF ``CSRFProtect``, if it runs one.

    The endpoint authenticates its callers by bearer token; a mail provider has no CSRF token
    to send. engage's own check already leaves it alone (:data:`CSRF_EXEMPT`); this does the
    same for a host's app-wide ``CSRFProtect``, whether it was set up before engage or after.
    """
    view = f"{inbound_replies.__module__}.{inbound_replies.__name__}"
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(view)
        return

    exempted = False

    def exempt_once_csrf_is_there() -> None:
        nonlocal exempted
        if not exempted and (late := app.extensions.get("csrf")) is not None:
            late.exempt(view)
            exempted = True

    # First in line, before the host's own before_request functions (CSRFProtect's among them).
    app.before_request_funcs.setdefault(None, []).insert(0, exempt_once_csrf_is_there)
