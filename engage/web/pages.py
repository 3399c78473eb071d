"""engage's own pages: the start page, a record's timeline, an email's page, the organisation
settings, and the web app shell (manifest, service worker, offline page).

Views stay thin: access rules live in :mod:`engage.access` and :mod:`engage.web.guards`,
timeline rules in :mod:`engage.timeline`. Each view answers a partial to htmx and a full page
otherwise, from the same URL (with ``Vary: HX-Request``), so every screen also works without
JavaScript.
"""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from .. import organisation, queueing, sequences
from ..context import current_engage
from ..i18n import gettext as _
from ..local_time import sender_zone
from ..models import utcnow
from ..opt_out import opt_out_line_enabled, set_opt_out_line
from ..records import EngageUser, RecordRef
from ..timeline import Cursor, can_change, live_version, timeline_page
from .blueprint import STATIC, blueprint, engage_root
from .compose_form import TIMELINE_CHANGED
from .forms import SettingsForm
from .guards import Denied, admin_user, sales_user
from .htmx import is_htmx


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
        "engage/home.html", user=user, engagement_enabled=organisation.engagement_enabled()
    )


def _timeline_context(record: Any, user: EngageUser, before: Cursor | None = None) -> dict:
    """What the timeline templates need: the page, and the live poll while it can change."""
    page = timeline_page(
        current_engage.session,
        user,
        record.ref,
        before=before,
        size=current_app.config["ENGAGE_TIMELINE_PAGE_SIZE"],
    )
    context: dict[str, Any] = {"record": record, "page": page, "user": user}
    context.update(_live_poll(record, page.activities))
    if before is None and request.args.get("part") != "list":
        # The record's sequences (S47), above its activities.
        context["enrolments"] = sequences.enrolments_for(
            current_engage.session,
            user,
            record.ref,
            sender_zone(user, request.values.get("browser_zone")),
        )
    return context


def _live_poll(record: Any, activities: list[Any]) -> dict[str, Any]:
    """The poller of a timeline's first page (``live_url`` is ``None`` when nothing can change)."""
    config = current_app.config
    live = [
        a
        for a in activities
        if can_change(a, now=utcnow(), live_days=float(config["ENGAGE_TIMELINE_LIVE_DAYS"]))
    ]
    if not live:
        return {"live_url": None, "live_ids": []}
    url = url_for(
        "engage.timeline_live",
        record_type=record.ref.type,
        record_id=record.ref.id,
        v=live_version(activities),
        ids=",".join(str(a.id) for a in activities),
    )
    return {
        "live_url": url,
        "live_ids": [a.id for a in activities],
        "live_poll": config["ENGAGE_TIMELINE_POLL_SECONDS"],
    }


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
    context = _timeline_context(record, user, before)
    if is_htmx():
        if before:
            template = "engage/_timeline_items.html"
        elif request.args.get("part") == "list":
            template = "engage/_timeline_list.html"
        else:
            template = "engage/_timeline.html"
        return render_template(template, **context)
    return render_template("engage/timeline_page.html", **context)


@blueprint.get("/timeline/<record_type>/<record_id>/live")
def timeline_live(record_type: str, record_id: str) -> Any:
    """What changed on a timeline's first page since the poller's version (htmx polls it).

    ``204 No Content`` when nothing did; the changed entries (the poller swaps them in by id)
    and a new poller when some did; an ``engage-timeline-changed`` event, which redraws the
    list, when an entry came or went. Short polls rather than server-sent events, for the
    reasons given in :func:`engage.web.assistant.assistant`.
    """
    user = sales_user()
    record = _record_or_404(record_type, record_id)
    context = _timeline_context(record, user)
    activities = context["page"].activities
    shown = request.args.get("ids", "")
    if shown != ",".join(str(a.id) for a in activities):
        response = make_response("")
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
    elif request.args.get("v") == live_version(activities):
        response = make_response("", 204)
    else:
        response = make_response(render_template("engage/_timeline_live.html", **context))
    response.headers["Cache-Control"] = "no-store"
    return response


def engage_timeline(ref: RecordRef | str, record_id: object = None) -> Markup:
    """A record's timeline, drawn into a host page (with or without JavaScript).

    ``engage_timeline("contact", contact.id)`` or ``engage_timeline(RecordRef("contact", id))``.
    The timeline is rendered on the server with the page, so it shows without JavaScript too;
    with it, htmx keeps it current. A user who may not see it gets the explanation instead.
    """
    if not isinstance(ref, RecordRef):
        if record_id is None:
            raise TypeError(
                'engage_timeline takes a RecordRef, or a type and an id: ("contact", 7)'
            )
        ref = RecordRef(str(ref), str(record_id))
    url = url_for("engage.timeline", record_type=ref.type, record_id=ref.id)
    try:
        user = sales_user()
        record = current_engage.records.get(ref)
        if record is None:
            abort(404)
        inner = render_template("engage/_timeline.html", **_timeline_context(record, user))
    except HTTPException as refusal:
        title = refusal.title if isinstance(refusal, Denied) else _("Not found")
        inner = render_template(
            "engage/_denied.html", title=title, reason=refusal.description, status=refusal.code
        )
    return Markup(
        render_template("engage/_timeline_slot.html", url=url, ref=ref, inner=Markup(inner))
    )


@blueprint.record_once
def _register_timeline_global(state: Any) -> None:
    state.app.add_template_global(engage_timeline, "engage_timeline")


@blueprint.route("/settings", methods=["GET", "POST"])
def organisation_settings() -> Any:
    """The admin's organisation settings (SPEC S11)."""
    user = admin_user()
    form = SettingsForm()
    if form.validate_on_submit():
        organisation.set_engagement_enabled(form.engagement_enabled.data, by=user.id)
        set_opt_out_line(form.opt_out_line.data, by=user.id)
        flash(
            _("Email engagement is now on.")
            if form.engagement_enabled.data
            else _("Email engagement is now off: no follow controls, tracking or cards."),
            "engage-success",
        )
        return redirect(url_for("engage.organisation_settings"))
    if request.method == "GET":
        form.engagement_enabled.data = organisation.engagement_enabled()
        form.opt_out_line.data = opt_out_line_enabled()
    return render_template("engage/settings.html", form=form, workers=queueing.worker_health())


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
    scope = config["ENGAGE_SERVICE_WORKER_SCOPE"] or engage_root()
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
