"""The open pixel's fast path: answered below Flask, before any request machinery runs.

The pixel is by far the most requested URL engage has (every open of every followed copy,
and every prefetch by a mail proxy), and all it does is note a token and return 42 bytes.
Going through Flask costs a request context, the session, the host's before and after request
functions, its database teardown: several times the work of the pixel itself. This WSGI
middleware, installed by :meth:`engage.Engage.init_app`, answers pixel requests itself and hands
every other request to the app unchanged.

It keeps the endpoint's promises: the GIF for every token, an event only for a genuine one,
noted through :func:`engage.tracking.note_event` like every other event, no database access,
and the same headers as the route (no-store, and the security headers of a tracking URL).
A host that puts a proxy fix (``ProxyFix``) around its app after ``init_app`` gets corrected
client addresses here too.

Being the first to see every request, it is also where a process, at its first request, looks
for tracking events that a process now gone left in the event spool (a server restarted after a
crash) and has them pushed again (:func:`engage.tracking.adopt_spooled_events`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from ..models import EventKind
from ..tracking import adopt_spooled_events, note_event, token_is_genuine
from .security import security_headers
from .tracking import NO_STORE, PIXEL

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(PIXEL))),
    *NO_STORE.items(),
]


class PixelFastPath:
    """WSGI middleware serving ``<prefix>/t/o/<token>.gif`` without entering Flask."""

    def __init__(self, wrapped: WSGIApp, app: Flask) -> None:
        self.wrapped = wrapped
        self.app = app
        self.start = app.config["ENGAGE_URL_PREFIX"].rstrip("/") + "/t/o/"
        self.pid = 0
        self._headers: list[tuple[str, str]] | None = None

    def headers(self) -> list[tuple[str, str]]:
        """The pixel's headers: the route's, with the security headers of a tracking URL.

        Made on the first pixel, once the host has finished setting its config.
        """
        if self._headers is None:
            security = security_headers(self.app.config, tracking=True)
            self._headers = [*_HEADERS, *security.items()]
        return self._headers

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.pid != os.getpid():  # this process's first request
            self.pid = os.getpid()
            adopt_spooled_events(self.app)
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if not (path.startswith(self.start) and path.endswith(".gif")) or method not in (
            "GET",
            "HEAD",
        ):
            return self.wrapped(environ, start_response)
        token = path[len(self.start) : -len(".gif")]
        if token_is_genuine(token, self.app.config["SECRET_KEY"] or b""):
            self._note(token, method, environ)
        start_response("200 OK", list(self.headers()))
        return [] if method == "HEAD" else [PIXEL]

    def _note(self, token: str, method: str, environ: dict[str, Any]) -> None:
        note_event(
            self.app,
            EventKind.OPEN,
            token,
            method=method,
            user_agent=environ.get("HTTP_USER_AGENT", ""),
            ip=environ.get("REMOTE_ADDR"),
        )
