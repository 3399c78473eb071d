"""The page a recipient reaches from "Don't track my opens and clicks" (SPEC S43).

No sign-in: the signed token names the one copy. ``GET`` only shows the confirmation page
(mail security scanners fetch every link, so opening it must change nothing); its button posts
to the same URL, which records the opt-out once. Both pages are in the email's language, which
the token carries.
"""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request
from flask_babel import force_locale

from .. import sequences
from ..context import current_engage
from ..models import Party
from ..opt_out import read_opt_out_token
from .blueprint import CSRF_EXEMPT, blueprint
from .tracking import NO_STORE


@blueprint.route("/o/<token>", methods=["GET", "POST"])
def opt_out(token: str) -> Any:
    """Confirm (GET) and record (POST) a recipient's wish not to be tracked."""
    link = read_opt_out_token(token)
    party = current_engage.session.get(Party, link.party_id) if link else None
    if link is None or party is None:
        abort(404)
    state = "done" if party.opted_out_at is not None else "ask"
    if request.method == "POST" and state == "ask":
        # Their sequences end with it (S47).
        state = "done_now" if sequences.opt_out(current_engage.session, party) else "done"
    with force_locale(link.language):
        page = render_template(
            "engage/opt_out_page.html",
            state=state,
            address=party.address,
            language=link.language,
        )
    return page, 200, {**NO_STORE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


# The signed token is the credential; a recipient has no session to carry a CSRF token in.
CSRF_EXEMPT.add("engage.opt_out")
