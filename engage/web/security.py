"""The security headers engage puts on its own responses (README "Security").

Every response of engage's blueprint gets, unless it already has them:

- ``Content-Security-Policy``: ``ENGAGE_CONTENT_SECURITY_POLICY``,
  by default :data:`engage.config.DEFAULT_CONTENT_SECURITY_POLICY`, its frame-ancestors
  widened by ``ENGAGE_FRAME_ANCESTORS``;
- ``X-Frame-Options: SAMEORIGIN`` for browsers that predate ``frame-ancestors`` (left out when
  ``ENGAGE_FRAME_ANCESTORS`` names other origins, which it cannot express);
- ``X-Content-Type-Options: nosniff``;
- ``Referrer-Policy: same-origin``, or ``no-referrer`` on the URLs a recipient fetches from an
  email (pixel, tracked link, followed attachment): their tokens must not travel on, and the
  page a link leads to learns nothing of where the reader read it.

Only engage's own responses: a host page that shows engage's partials is the host's, under the
host's headers, and engage does not touch it. ``ENGAGE_SECURITY_HEADERS = False`` turns all of
this off for hosts that set headers of their own app-wide.

The nonce: Trix puts its element styles in ``<style>`` tags it adds at load, and htmx adds one
for its request indicators; a policy without ``'unsafe-inline'`` lets them in through a nonce.
``'nonce-{nonce}'`` in the policy stands for a fresh one per response; :func:`csp_nonce` makes
it when a page asks for it (``engage_assets()`` does, and hands it to Trix and htmx through a
meta tag), and a response that asked for none (a partial, the pixel) goes without the source.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from flask import current_app, has_request_context, request
from werkzeug.wrappers import Response

#: The place of the per-response nonce in ``ENGAGE_CONTENT_SECURITY_POLICY``.
NONCE_SOURCE = "'nonce-{nonce}'"

#: The endpoints a recipient's mail client or browser fetches from an email.
TRACKING_ENDPOINTS = frozenset(
    {"engage.tracking_pixel", "engage.tracking_click", "engage.tracking_attachment"}
)

# Kept with the request (not on ``g``, which a test's app context can share between requests).
_NONCE_KEY = "engage.csp_nonce"


def _policy_with_nonce(config: Mapping[str, Any]) -> bool:
    policy = config["ENGAGE_CONTENT_SECURITY_POLICY"]
    return bool(config["ENGAGE_SECURITY_HEADERS"] and policy and NONCE_SOURCE in policy)


def csp_nonce() -> str | None:
    """The nonce of this response's Content-Security-Policy, made on first use.

    ``None`` when engage sets no policy with a nonce on this response: on the host's own pages,
    when the security headers are off, or when the configured policy has no ``'nonce-{nonce}'``.
    """
    if not has_request_context() or request.blueprint != "engage":
        return None
    if not _policy_with_nonce(current_app.config):
        return None
    if (nonce := request.environ.get(_NONCE_KEY)) is None:
        nonce = request.environ[_NONCE_KEY] = secrets.token_urlsafe(18)
    return str(nonce)


def _frame_ancestors(policy: str, origins: Iterable[str]) -> str:
    """``policy`` with ``origins`` added to its frame-ancestors (made ``'self'`` if missing)."""
    extra = list(origins)
    for origin in extra:
        if not origin or any(c.isspace() or c in ";," for c in origin):
            raise ValueError(f"ENGAGE_FRAME_ANCESTORS: {origin!r} is not an origin")
    directives = _tidy(policy).split("; ")
    for i, directive in enumerate(directives):
        name, *sources = directive.split()
        if name.lower() == "frame-ancestors":
            kept = [s for s in sources if s != "'none'"]
            directives[i] = " ".join([name, *kept, *extra])
            break
    else:
        directives.append(" ".join(["frame-ancestors", "'self'", *extra]))
    return "; ".join(directives)


def _tidy(policy: str) -> str:
    # One space between sources, "; " between directives, none of them empty.
    directives = (" ".join(d.split()) for d in policy.split(";"))
    return "; ".join(d for d in directives if d)


def security_headers(
    config: Mapping[str, Any], *, tracking: bool = False, nonce: str | None = None
) -> dict[str, str]:
    """The headers engage gives one of its responses under ``config``.

    :param tracking: the response answers a recipient's fetch from an email (no referrer).
    :param nonce: the response's nonce; without one the policy's nonce source is left out.
    """
    if not config["ENGAGE_SECURITY_HEADERS"]:
        return {}
    headers: dict[str, str] = {}
    origins = config["ENGAGE_FRAME_ANCESTORS"] or ()
    origins = tuple(origins.split() if isinstance(origins, str) else origins)
    if policy := config["ENGAGE_CONTENT_SECURITY_POLICY"]:
        policy = policy.replace(NONCE_SOURCE, f"'nonce-{nonce}'" if nonce else "")
        if origins:
            policy = _frame_ancestors(policy, origins)
        headers["Content-Security-Policy"] = _tidy(policy)
    if not origins:
        headers["X-Frame-Options"] = "SAMEORIGIN"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer" if tracking else "same-origin"
    return headers


def set_security_headers(response: Response) -> Response:
    """After each request of engage's blueprint: add the headers the response lacks."""
    headers = security_headers(
        current_app.config,
        tracking=request.endpoint in TRACKING_ENDPOINTS,
        nonce=request.environ.get(_NONCE_KEY),
    )
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response
