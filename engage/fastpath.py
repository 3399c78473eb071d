"""The open pixel's fast path: answered below Flask, before any request machinery runs.

The pixel is by far the most requested URL engage has (every open of every followed copy,
and every prefetch by a mail proxy), and all it does is note a token and return 42 bytes.
Going through Flask costs a request context, the session, the host's before and after request
functions, its database teardown: several times the work of the pixel itself. This WSGI
middleware, installed by :meth:`engage.Engage.init_app`, answers pixel requests itself and hands
every other request to the app unchanged.

It keeps the endpoint's promises: the GIF for every token, an event only for a genuine one,
pushed through the same buffer as :func:`engage.tracking.enqueue_event`, and no database access.
A host that puts a proxy fix (``ProxyFix``) around its app after ``init_app`` gets corrected
client addresses here too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from .tracking import _NO_STORE, PIXEL, _buffer_of, push_events, token_is_genuine

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(PIXEL))),
    *_NO_STORE.items(),
]


class PixelFastPath:
    """WSGI middleware serving ``<prefix>/t/o/<token>.gif`` without entering Flask."""

    def __init__(self, wrapped: WSGIApp, app: Flask) -> None:
        self.wrapped = wrapped
        self.app = app
        self.start = app.config["ENGAGE_URL_PREFIX"].rstrip("/") + "/t/o/"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
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
        start_response("200 OK", list(_HEADERS))
        return [] if method == "HEAD" else [PIXEL]

    def _note(self, token: str, method: str, environ: dict[str, Any]) -> None:
        event = json.dumps(
            {
                "id": os.urandom(12).hex(),
                "kind": "open",
                "token": token,
                "at": time.time(),
                "method": method,
                "ua": environ.get("HTTP_USER_AGENT", "")[:400],
                "ip": environ.get("REMOTE_ADDR"),
            }
        )
        if float(self.app.config["ENGAGE_EVENT_BUFFER_MS"]) <= 0:
            push_events(self.app, [event])
        else:
            _buffer_of(self.app).add(event)
