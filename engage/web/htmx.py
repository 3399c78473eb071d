"""Tiny helpers for answering htmx requests.

Reading the request headers goes through ``htmx-flask``'s :class:`HtmxHeaders`, without
replacing the host's request class (an extension must not take that over). Response headers
are set here directly: htmx-flask's own ``reswap`` check has a bug (two of its allowed values
are glued into one string), so engage does not use it.
"""

from __future__ import annotations

from flask import Response, request
from htmx_flask.requests import HtmxHeaders

SWAP_STYLES = frozenset(
    {
        "innerHTML",
        "outerHTML",
        "beforebegin",
        "afterbegin",
        "beforeend",
        "afterend",
        "delete",
        "none",
    }
)


def htmx() -> HtmxHeaders:
    """The htmx headers of the current request; falsy when it is not an htmx request."""
    return HtmxHeaders(request.headers)


def is_htmx() -> bool:
    """True for a request made by htmx (but not a boosted full-page navigation)."""
    headers = htmx()
    return bool(headers) and not headers.boosted


def reswap(response: Response, style: str) -> Response:
    """Tell htmx to swap ``response`` with another swap style than the element asked for."""
    if style.split(" ", 1)[0] not in SWAP_STYLES:
        raise ValueError(f"unknown htmx swap style: {style!r}")
    response.headers["HX-Reswap"] = style
    return response


def retarget(response: Response, selector: str) -> Response:
    """Tell htmx to swap ``response`` into another element than the one that asked."""
    response.headers["HX-Retarget"] = selector
    return response


def add_vary(response: Response) -> Response:
    """Mark ``response`` as varying with ``HX-Request``: a partial and a page share one URL."""
    response.vary.add("HX-Request")
    return response
