"""engage's web layer: the blueprint and one module per screen.

This is the only part of engage that sees Flask's ``request``. The route modules below register
their views on :data:`engage.web.blueprint.blueprint` when they are imported; they are listed
here, in one place, so that registering the blueprint registers every screen:

- :mod:`.pages`: the start page, a record's timeline, the organisation settings, the app shell
- :mod:`.compose`: the compose panel (write, save, send, send later, reminder, templates)
- :mod:`.compose_attachments`: the compose panel's attachments
- :mod:`.emails`: an email's page, its interactions, rescheduling and its reminder
- :mod:`.assistant`: the action cards of the assistant panel
- :mod:`.templates`: the sales managers' email templates
- :mod:`.sequences`: the sales managers' sequences, enrolling records, an enrolment's controls
- :mod:`.bulk`: one email each to a selection of records
- :mod:`.inbound`: the inbound endpoint for replies
- :mod:`.tracking`: the pixel, click and attachment URLs recipients fetch
- :mod:`.opt_out`: the page of a recipient's "Don't track my opens and clicks" link
"""

from __future__ import annotations

from flask import Flask

from . import (  # noqa: F401  (importing a route module registers its views)
    assistant,
    bulk,
    compose,
    compose_attachments,
    emails,
    inbound,
    opt_out,
    pages,
    sequences,
    templates,
    tracking,
)
from .blueprint import blueprint, warn_if_assets_missing
from .fastpath import PixelFastPath

__all__ = ["blueprint", "register"]


def register(app: Flask) -> None:
    """Mount engage's web layer on ``app`` under ``ENGAGE_URL_PREFIX`` (see ``Engage.init_app``)."""
    if "babel" not in app.extensions:
        from flask_babel import Babel

        Babel(app)
    app.register_blueprint(blueprint, url_prefix=app.config["ENGAGE_URL_PREFIX"])
    # The open pixel is answered below Flask (see engage.web.fastpath); the blueprint's route
    # stays for url_for and for apps that bypass app.wsgi_app.
    app.wsgi_app = PixelFastPath(app.wsgi_app, app)  # type: ignore[method-assign]
    inbound.exempt_from_host_csrf(app)
    warn_if_assets_missing(app)
