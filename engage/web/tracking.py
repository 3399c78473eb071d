"""The URLs a followed copy's recipient fetches: the open pixel, tracked links, followed
attachments (SPEC S13, S15, S17). No sign-in: the token is the key.

None of them writes to the database (DESIGN "Tracking"): each notes its event with
:func:`engage.tracking.note_event` and answers at once. The pixel is usually answered even
before Flask, by :mod:`engage.web.fastpath`; its route here serves ``url_for`` and apps that
bypass ``app.wsgi_app``.
"""

from __future__ import annotations

import base64
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, current_app, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from ..context import current_engage
from ..models import Attachment, EventKind, Link, Party
from ..tracking import note_event, token_is_genuine
from .blueprint import blueprint
from .compose_attachments import file_response

#: A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
#: What every tracking answer carries, so that no cache answers a second fetch in our place.
NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
}


def _note(kind: EventKind, token: str, **extra: Any) -> None:
    # Behind a proxy, the host app is expected to apply ProxyFix; engage trusts remote_addr.
    note_event(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        kind,
        token,
        method=request.method,
        user_agent=request.headers.get("User-Agent", ""),
        ip=request.remote_addr,
        **extra,
    )


@blueprint.route("/t/o/<token>.gif", methods=["GET", "HEAD"])
def tracking_pixel(token: str) -> Response:
    """The open pixel of a followed copy: always the GIF; an event only for a genuine token."""
    if token_is_genuine(token):
        _note(EventKind.OPEN, token)
    return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)


@blueprint.route("/t/c/<token>/<engage_id:position>", methods=["GET", "HEAD"])
def tracking_click(token: str, position: int) -> BaseResponse:
    """A tracked link: redirect to the URL stored with the message, and note the click."""
    if not token_is_genuine(token):
        abort(404)
    url = current_engage.session.scalar(
        sa.select(Link.url)
        .join(Party, Party.email_id == Link.email_id)
        .where(Party.token == token, Link.position == position)
    )
    if url is None:
        abort(404)
    _note(EventKind.CLICK, token, position=position)
    response = redirect(url, code=302)
    response.headers.update(NO_STORE)
    return response


@blueprint.route("/t/a/<token>/<engage_id:attachment_id>", methods=["GET", "HEAD"])
def tracking_attachment(token: str, attachment_id: int) -> Response:
    """A followed attachment: the file as a download, and an attachment open for the worker.

    Only a followed file of the email this recipient's token belongs to is handed out; anything
    else is 404. Like the pixel and the click, nothing is written to the database here.
    """
    if not token_is_genuine(token):
        abort(404)
    found = current_engage.session.scalar(
        sa.select(Attachment)
        .join(Party, Party.email_id == Attachment.email_id)
        .where(
            Party.token == token,
            Attachment.id == attachment_id,
            Attachment.followed.is_(True),
        )
    )
    if found is None:
        abort(404)
    response = file_response(found)
    _note(EventKind.ATTACHMENT_OPEN, token, attachment_id=found.id)
    response.headers.update(NO_STORE)
    return response
