"""engage's blueprint: the pages and partials a rep uses, and the web app shell.

Views stay thin: access rules live in :mod:`engage.access`, timeline rules in
:mod:`engage.timeline`. Each view answers a partial to htmx and a full page otherwise, from the
same URL (with ``Vary: HX-Request``), so every screen also works without JavaScript.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse
from wtforms import BooleanField
from wtforms.validators import ValidationError

from . import settings
from .access import Denied, admin_user, sales_user, visible_email_or_404
from .extension import current_engage
from .htmx import add_vary, is_htmx
from .i18n import format_when, lazy_gettext, ngettext
from .i18n import gettext as _
from .records import RecordRef
from .timeline import Cursor, timeline_page

STATIC = Path(__file__).parent / "static"

blueprint = Blueprint(
    "engage",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

#: Endpoints that take POSTs from outside a signed-in browser and check their own tokens.
CSRF_EXEMPT: set[str] = set()


@blueprint.before_request
def _protect_from_csrf() -> None:
    # The host may not run Flask-WTF's CSRFProtect app-wide, so engage guards its own
    # endpoints: every state-changing request must carry the session's CSRF token.
    if request.method in {"GET", "HEAD", "OPTIONS"} or request.endpoint in CSRF_EXEMPT:
        return
    token = request.form.get("csrf_token") or request.headers.get("X-CSRFToken")
    try:
        validate_csrf(token)
    except (ValidationError, CSRFError):
        raise Denied(
            400,
            _(
                "This form is missing its security token or the token has expired. "
                "Reload the page and try again; nothing was changed."
            ),
            _("The request could not be checked"),
        ) from None


@blueprint.errorhandler(400)
@blueprint.errorhandler(404)
@blueprint.errorhandler(413)
def _explain_error(error: HTTPException) -> Any:
    # Plain aborts inside engage's views get the same explained page (or partial) as refusals.
    titles = {
        400: _("The request could not be understood"),
        404: _("Not found"),
        413: _("Too large"),
    }
    reasons = {
        404: _("It does not exist, or it is not yours to see."),
    }
    code = error.code or 500
    reason = reasons.get(code) if error.description == type(error).description else None
    return Denied(code, reason or error.description or "", titles[code]).get_response()


@blueprint.after_request
def _vary_on_htmx(response: Response) -> Response:
    return add_vary(response)


@blueprint.record_once
def _register_template_globals(state: Any) -> None:
    # App-wide globals, so host templates can place engage's partials on any page. ``_e`` is
    # engage's gettext (its own translation domain), kept apart from the host's ``_``.
    state.app.add_template_global(engage_assets, "engage_assets")
    state.app.add_template_global(engage_timeline, "engage_timeline")
    state.app.add_template_global(_, "_e")
    state.app.add_template_global(ngettext, "ngettext_e")
    state.app.add_template_global(_locale, "engage_locale")
    state.app.add_template_global(format_when, "engage_when")
    state.app.add_template_global(lambda: current_engage.user, "current_engage_user")
    # Flask-WTF names this global only when the host runs CSRFProtect; engage's forms need it.
    state.app.jinja_env.globals.setdefault("csrf_token", generate_csrf)


def _locale() -> str:
    from flask_babel import get_locale

    return str(get_locale() or "en").replace("_", "-")


def _engage_root() -> str:
    """The URL of engage's mount point, with a trailing slash."""
    return url_for("engage.home")


def engage_assets() -> Markup:
    """The tags a host page needs for engage's partials: CSS, htmx, engage.js, the manifest.

    Put ``{{ engage_assets() }}`` in the ``<head>`` of every host page that shows a partial.
    """
    config = current_app.config
    scope = config["ENGAGE_SERVICE_WORKER_SCOPE"] or _engage_root()
    # The notes engage.js shows when a request fails (translated here, outside the f-strings,
    # so that the catalogue extraction sees them on every Python version).
    error = _("Something went wrong. Nothing was lost; reload the page and try again.")
    offline = _("The server cannot be reached. Check your connection and try again.")
    parts = [
        f'<meta name="engage-csrf-token" content="{escape(generate_csrf())}">',
        f'<link rel="stylesheet" href="{url_for("engage.static", filename="engage/vendor/trix.css")}">',
        f'<link rel="stylesheet" href="{url_for("engage.static", filename="engage/engage.css")}">',
        f'<link rel="manifest" href="{url_for("engage.manifest")}">',
        '<meta name="theme-color" content="#1f5f8b">',
        f'<script src="{url_for("engage.static", filename="engage/vendor/htmx.min.js")}" defer></script>',
        f'<script src="{url_for("engage.static", filename="engage/vendor/trix.umd.min.js")}" defer></script>',
        f'<script src="{url_for("engage.static", filename="engage/engage.js")}" defer'
        f' data-sw-url="{url_for("engage.service_worker")}" data-sw-scope="{escape(scope)}"'
        f' data-msg-error="{escape(error)}" data-msg-offline="{escape(offline)}"'
        "></script>",
    ]
    return Markup("\n".join(parts))


def engage_timeline(ref: RecordRef) -> Markup:
    """Markup that loads ``ref``'s timeline into a host page.

    With JavaScript, htmx fetches the partial when the page loads; without it, a link leads to
    the same timeline as a page of its own.
    """
    url = url_for("engage.timeline", record_type=ref.type, record_id=ref.id)
    return Markup(render_template("engage/_timeline_slot.html", url=url, ref=ref))


def _record_or_404(record_type: str, record_id: str) -> Any:
    record = current_engage.records.get(RecordRef(record_type, record_id))
    if record is None:
        abort(404)
    return record


@blueprint.get("/")
def home() -> Any:
    """engage's own start page: what the signed-in user can do here."""
    user = current_engage.user
    return render_template(
        "engage/home.html", user=user, engagement_enabled=settings.engagement_enabled()
    )


@blueprint.get("/timeline/<record_type>/<record_id>")
def timeline(record_type: str, record_id: str) -> Any:
    """A record's timeline: the partial for htmx, a page of its own otherwise."""
    user = sales_user()
    record = _record_or_404(record_type, record_id)
    before = None
    if cursor := request.args.get("before"):
        try:
            before = Cursor.parse(cursor)
        except ValueError:
            abort(400, description=_("That page of the timeline does not exist."))
    page = timeline_page(
        current_engage.session,
        user,
        record.ref,
        before=before,
        size=current_app.config["ENGAGE_TIMELINE_PAGE_SIZE"],
    )
    context = {"record": record, "page": page, "user": user}
    if is_htmx():
        if before:
            template = "engage/_timeline_items.html"
        elif request.args.get("part") == "list":
            template = "engage/_timeline_list.html"
        else:
            template = "engage/_timeline.html"
        return render_template(template, **context)
    return render_template("engage/timeline_page.html", **context)


@blueprint.get("/emails/<int:email_id>")
def email_detail(email_id: int) -> Any:
    """One email, read-only, with its parties and each recipient's delivery."""
    email = visible_email_or_404(email_id)
    regarding = current_engage.records.get(email.regarding) if email.regarding else None
    context = {"email": email, "regarding": regarding}
    if is_htmx():
        return render_template("engage/_email_detail.html", **context)
    return render_template("engage/email_page.html", **context)


class SettingsForm(FlaskForm):
    """The organisation settings an admin can change."""

    engagement_enabled = BooleanField(lazy_gettext("Email engagement enabled"))


@blueprint.route("/settings", methods=["GET", "POST"])
def organisation_settings() -> Any:
    """The admin's organisation settings (SPEC S11)."""
    user = admin_user()
    form = SettingsForm()
    if form.validate_on_submit():
        settings.set_engagement_enabled(form.engagement_enabled.data, by=user.id)
        flash(
            _("Email engagement is now on.")
            if form.engagement_enabled.data
            else _("Email engagement is now off: no follow controls, tracking or cards."),
            "engage-success",
        )
        return redirect(url_for("engage.organisation_settings"))
    if request.method == "GET":
        form.engagement_enabled.data = settings.engagement_enabled()
    return render_template("engage/settings.html", form=form, workers=_worker_health())


def _worker_health() -> dict[str, Any]:
    """What an admin needs to know about the background side: workers and the cron sweep."""
    from redis.exceptions import RedisError
    from rq import Worker

    from .jobs import last_sweep

    try:
        queue = current_engage.queue
        return {
            "ok": True,
            "queue": queue.name,
            "workers": Worker.count(queue=queue),
            "waiting": len(queue),
            "last_sweep": last_sweep(),
        }
    except RedisError as exc:
        return {"ok": False, "error": str(exc)}


@blueprint.get("/manifest.webmanifest")
def manifest() -> Response:
    """The web app manifest that makes engage installable."""
    config = current_app.config
    icon = lambda name, size, purpose="any": {  # noqa: E731
        "src": url_for("engage.static", filename=f"engage/icons/{name}"),
        "sizes": size,
        "type": "image/svg+xml" if name.endswith(".svg") else "image/png",
        "purpose": purpose,
    }
    scope = config["ENGAGE_SERVICE_WORKER_SCOPE"] or _engage_root()
    body = {
        "name": config["ENGAGE_APP_NAME"],
        "short_name": config["ENGAGE_APP_NAME"],
        "start_url": config["ENGAGE_APP_START_URL"] or url_for("engage.home"),
        "scope": scope,
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1f5f8b",
        "icons": [
            icon("icon.svg", "any"),
            icon("icon-192.png", "192x192"),
            icon("icon-512.png", "512x512"),
            icon("maskable-512.png", "512x512", "maskable"),
        ],
    }
    return Response(json.dumps(body), mimetype="application/manifest+json")


@blueprint.get("/sw.js")
def service_worker() -> Response:
    """The service worker, served from the prefix so its default scope covers engage."""
    response = send_from_directory(STATIC / "engage", "sw.js", mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    scope = current_app.config["ENGAGE_SERVICE_WORKER_SCOPE"]
    if scope:
        response.headers["Service-Worker-Allowed"] = scope
    return response


@blueprint.get("/offline")
def offline() -> str:
    """The page the service worker shows when a page cannot be fetched."""
    return render_template("engage/offline.html")


# The compose views and the compose panel's attachment views register themselves on the
# blueprint above.
from . import attachments, compose_views, template_views  # noqa: E402, F401


@blueprint.route("/t/o/<token>.gif", methods=["GET", "HEAD"])
def tracking_pixel(token: str) -> Response:
    """The open pixel of a followed copy (no sign-in: recipients fetch it)."""
    from .tracking import pixel

    return pixel(token)


@blueprint.route("/t/c/<token>/<int:position>", methods=["GET", "HEAD"])
def tracking_click(token: str, position: int) -> BaseResponse:
    """A tracked link of a followed copy (no sign-in: recipients follow it)."""
    from .tracking import click

    return click(token, position)


@blueprint.route("/t/a/<token>/<int:attachment_id>", methods=["GET", "HEAD"])
def tracking_attachment(token: str, attachment_id: int) -> Response:
    """A followed attachment of a followed copy (no sign-in: recipients download it)."""
    from .tracking import attachment

    return attachment(token, attachment_id)


# The inbound endpoint for replies (in CSRF_EXEMPT too), and the action cards and assistant
# panel, register themselves on the blueprint above.
from . import cards, replies  # noqa: E402, F401
