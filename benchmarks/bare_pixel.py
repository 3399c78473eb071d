"""The baseline of the pixel benchmark: a bare Flask route answering the same GIF."""

from __future__ import annotations

from flask import Flask, Response

from engage.web.tracking import PIXEL

app = Flask(__name__)
# Like any real app (and the engage host app it is compared with), it has a secret key, so
# Flask opens and saves the (empty) session on each request just the same.
app.config["SECRET_KEY"] = "bare-pixel-secret"
HEADERS = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache"}


@app.get("/t/o/<token>.gif")
def pixel(token: str) -> Response:
    return Response(PIXEL, mimetype="image/gif", headers=HEADERS)
