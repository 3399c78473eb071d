"""engage's blueprint, its request hooks and the template globals hosts use.

The route modules of :mod:`engage.web` register their views on :data:`blueprint`; this module
holds what every view shares: the CSRF guard, the explained error pages, ``Vary: HX-Request``,
and the globals (``engage_assets()``, ``_e`` …) a host's templates use; ``engage_timeline()``
is registered by :mod:`engage.web.pages`, ``engage_assistant()`` by :mod:`engage.web.assistant`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, url_for
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map
from wtforms.validators import ValidationError

from ..context import current_engage
from ..i18n import (
    format_local,
    format_when,
    gettext_markup,
    locale_tag,
    ngettext_markup,
    read,
    status_label,
)
from ..i18n import gettext as _
from ..ids import MAX_ID
from ..local_time import valid_zone
from ..records import RecordRef
from .guards import Denied
from .htmx import add_vary
from .security import csp_nonce, set_security_headers

PACKAGE = Path(__file__).resolve().parent.parent
STATIC = PACKAGE / "static"

#: The third-party browser files engage's pages load, under ``static/engage/vendor/``: copies
#: of the npm packages package-lock.json pins, committed so that every package carries them.
VENDOR_FILES = ("htmx.min.js", "trix.umd.min.js", "trix.css")

#: Missing front-end files already reported in this process, so the log says it once.
_REPORTED_MISSING: set[Path] = set()


def warn_if_assets_missing(app: Flask) -> None:
    """Say in the log, once per process, which of engage's front-end files are missing.

    Without them engage's pages stay on "Loading…" and the browser only gets 404s, while the
    server would otherwise say nothing. They are missing from a checkout whose vendor folder
    was deleted, or from a package built without them.
    """
    folder = STATIC / "engage" / "vendor"
    missing = [name for name in VENDOR_FILES if not (folder / name).is_file()]
    if not missing or folder in _REPORTED_MISSING:
        return
    _REPORTED_MISSING.add(folder)
    app.logger.warning(
        "engage's front-end files are missing from %s: %s. engage's pages will not work "
        "(they stay on 'Loading…'). Install an engage package that carries them (any wheel "
        "or sdist of engage does), or in a checkout run `npm ci && npm run vendor`.",
        folder,
        ", ".join(missing),
    )


blueprint = Blueprint(
    "engage",
    "engage",
    root_path=str(PACKAGE),
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


class RowIdConverter(IntegerConverter):
    """``<engage_id:name>``: a row id in a URL; a number no row can have is not found (404)."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=MAX_ID)


@blueprint.record_once
def _register_converters(state: Any) -> None:
    # Registered before the routes below are added: the route modules use it for every id.
    state.app.url_map.converters.setdefault("engage_id", RowIdConverter)


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


# Content-Security-Policy, X-Frame-Options, nosniff, Referrer-Policy (see engage.web.security).
blueprint.after_request(set_security_headers)


@blueprint.record_once
def _register_template_globals(state: Any) -> None:
    # App-wide globals, so host templates can place engage's partials on any page. ``_e`` is
    # engage's gettext (its own translation domain), kept apart from the host's ``_``.
    state.app.add_template_global(engage_assets, "engage_assets")
    state.app.add_template_global(RecordRef, "RecordRef")
    state.app.add_template_global(gettext_markup, "_e")
    state.app.add_template_global(ngettext_markup, "ngettext_e")
    state.app.add_template_global(locale_tag, "engage_locale")
    state.app.add_template_global(format_when, "engage_when")
    # A time kept as ISO text in a timeline entry (an absence's return, S42), as a datetime.
    state.app.add_template_global(datetime.fromisoformat, "engage_parse_time")
    state.app.add_template_global(read, "engage_read")
    state.app.add_template_global(status_label, "engage_status")
    state.app.add_template_global(reader_time, "engage_local")
    state.app.add_template_global(time_tag, "engage_time")
    state.app.add_template_global(lambda: current_engage.user, "current_engage_user")
    state.app.add_template_global(csp_nonce, "engage_csp_nonce")
    # Flask-WTF names this global only when the host runs CSRFProtect; engage's forms need it.
    state.app.jinja_env.globals.setdefault("csrf_token", generate_csrf)


def reader_zone() -> str | None:
    """The zone the signed-in user reads times in: their profile's, else ``None`` (the host's
    Flask-Babel time zone, else UTC)."""
    try:
        user = current_engage.user
    except RuntimeError:  # outside a request
        return None
    return valid_zone(getattr(user, "timezone", None))


def reader_time(moment: Any, *, seconds: bool = False, zone: str | None = None) -> str:
    """``moment`` as the signed-in user reads it (S45): their zone (or ``zone``), their
    language, the date when it is not today. ``""`` for ``None``."""
    if moment is None:
        return ""
    return format_local(moment, valid_zone(zone) or reader_zone(), seconds=seconds)


def time_tag(moment: Any, *, seconds: bool = False, cls: str = "") -> Markup:
    """A ``<time>`` element: UTC for machines in ``datetime``, the reader's time as its text."""
    if moment is None:
        return Markup("")
    attr = f' class="{escape(cls)}"' if cls else ""
    return Markup('<time datetime="{}"{}>{}</time>').format(
        moment.isoformat(), Markup(attr), reader_time(moment, seconds=seconds)
    )


def engage_root() -> str:
    """The URL of engage's mount point, with a trailing slash."""
    return url_for("engage.home")


def engage_assets(nonce: str | None = None) -> Markup:
    """The tags a host page needs for engage's partials: CSS, htmx, engage.js, the manifest.

    Put ``{{ engage_assets() }}`` in the ``<head>`` of every host page that shows a partial.

    :param nonce: the style nonce of the host's own Content-Security-Policy, if it has one
        without ``'unsafe-inline'`` styles: Trix and htmx put it on the ``<style>`` tags they
        add. On engage's own pages it defaults to the nonce of engage's policy.
    """
    config = current_app.config
    scope = config["ENGAGE_SERVICE_WORKER_SCOPE"] or engage_root()
    # The notes engage.js shows when a request fails (translated here, outside the f-strings,
    # so that the catalogue extraction sees them on every Python version).
    error = _("Something went wrong. Nothing was lost; reload the page and try again.")
    offline = _("The server cannot be reached. Check your connection and try again.")
    parts = [
        f'<meta name="engage-csrf-token" content="{escape(generate_csrf())}">',
    ]
    if nonce := nonce or csp_nonce():
        # Trix reads its nonce from this tag; engage.js hands it to htmx.
        parts.append(f'<meta name="trix-csp-nonce" content="{escape(nonce)}">')
    parts += [
        f'<link rel="stylesheet" href="{url_for("engage.static", filename="engage/vendor/trix.css")}">',
        f'<link rel="stylesheet" href="{url_for("engage.static", filename="engage/engage.css")}">',
        f'<link rel="manifest" href="{url_for("engage.manifest")}">',
        '<meta name="theme-color" content="#1f5f8b">',
        f'<script src="{url_for("engage.static", filename="engage/vendor/htmx.min.js")}" defer></script>',
        f'<script src="{url_for("engage.static", filename="engage/vendor/trix.umd.min.js")}" defer></script>',
        f'<script src="{url_for("engage.static", filename="engage/engage.js")}" defer'
        f' data-sw-url="{url_for("engage.service_worker")}" data-sw-scope="{escape(scope)}"'
        f' data-msg-error="{escape(error)}" data-msg-offline="{escape(offline)}"'
        f' data-trix-lang="{escape(json.dumps(trix_words(), ensure_ascii=False))}"'
        "></script>",
    ]
    return Markup("\n".join(parts))


def trix_words() -> dict[str, str]:
    """The words of the Trix editor's toolbar and link dialog (``Trix.config.lang``), translated."""
    return {
        "bold": _("Bold"),
        "italic": _("Italic"),
        "strike": _("Strikethrough"),
        "link": _("Link"),
        "unlink": _("Unlink"),
        "heading1": _("Heading"),
        "quote": _("Quote"),
        "code": _("Code"),
        "bullets": _("Bullets"),
        "numbers": _("Numbers"),
        "outdent": _("Decrease level"),
        "indent": _("Increase level"),
        "undo": _("Undo"),
        "redo": _("Redo"),
        "attachFiles": _("Attach files"),
        "url": _("URL"),
        "urlPlaceholder": _("Enter a URL…"),
        "remove": _("Remove"),
        "captionPlaceholder": _("Add a caption…"),
        "byte": _("Byte"),
        "bytes": _("Bytes"),
    }
