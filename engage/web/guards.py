"""The web layer's guards (SPEC S36, S37): who is signed in, with which role, and which
email they may open. A refusal is a :class:`Denied`, which explains itself as a page (or an
htmx partial) instead of a bare status; another user's object answers 404, so its existence is
not revealed. The rules themselves are in :mod:`engage.access`.
"""

from __future__ import annotations

from typing import Any

from flask import abort, has_request_context, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from ..access import can_see
from ..context import current_engage
from ..i18n import gettext as _
from ..models import Email
from ..records import EngageUser
from .htmx import add_vary, is_htmx


class Denied(HTTPException):
    """A refusal that is explained to the user rather than answered with a bare status."""

    def __init__(self, status: int, reason: str, title: str) -> None:
        super().__init__(description=reason)
        self.code = status
        self.title = title

    def get_response(self, environ: Any = None, scope: Any = None) -> Any:  # noqa: ARG002
        if self.code == 413:
            _forget_the_body()
        template = "engage/_denied.html" if is_htmx() else "engage/denied.html"
        body = render_template(
            template, title=self.title, reason=self.description, status=self.code
        )
        response = make_response(body, self.code)
        # engage.js swaps explained refusals in, where htmx would drop a 4xx answer.
        response.headers["X-Engage-Explained"] = "1"
        return add_vary(response)


def _forget_the_body() -> None:
    """After a body too large to read, let the refusal page read an empty form instead.

    A host's layout (or Flask-WTF) may touch ``request.form`` or ``request.files`` while the
    refusal renders; reading the body again would raise the same 413 there, as a 500. The
    values are put where Werkzeug itself keeps the parsed form, in the request's ``__dict__``.
    """
    if has_request_context():
        empty = request.parameter_storage_class()
        request.__dict__.setdefault("form", empty)
        request.__dict__.setdefault("files", request.parameter_storage_class())


def _signed_in_user() -> EngageUser:
    user = current_engage.user
    if user is None:
        raise Denied(
            401,
            _("Sign in to use email engagement."),
            _("Not signed in"),
        )
    return user


def sales_user() -> EngageUser:
    """The signed-in user, who must hold a sales role; otherwise a page that says why."""
    user = _signed_in_user()
    if not user.is_sales:
        raise Denied(
            403,
            _(
                "Email engagement is for users with the salesperson or sales manager role. "
                "Your account has neither; ask your administrator to give you one."
            ),
            _("A sales role is needed"),
        )
    return user


def manager_user() -> EngageUser:
    """The signed-in user, who must be a sales manager; otherwise a page that says why."""
    user = sales_user()
    if not user.is_manager:
        raise Denied(
            403,
            _(
                "Templates are created and kept by sales managers. You can use them from "
                "Insert template when you write an email."
            ),
            _("The sales manager role is needed"),
        )
    return user


def admin_user() -> EngageUser:
    """The signed-in user, who must be an admin; otherwise a page that says why."""
    user = _signed_in_user()
    if not user.is_admin:
        raise Denied(
            403,
            _("Organisation settings can be changed by an administrator only."),
            _("The admin role is needed"),
        )
    return user


def visible_email_or_404(email_id: int) -> Email:
    """The email with this id if the signed-in sales user may see it; 404 otherwise."""
    user = sales_user()
    email = current_engage.session.get(Email, email_id)
    if email is None or not can_see(user, email.owner_id, email.owner_team):
        abort(404)
    return email
