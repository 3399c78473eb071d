"""Helpers shared by the browser tests (Playwright on Debian's chromium, the demo CRM served).

Fixtures live in conftest.py: ``browser``, ``page``, ``start_demo``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from tests.support import ROOT

#: The user agent the browser presents: a person's Chrome on Linux, not headless Chrome.
PERSON_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def chromium_path() -> str:
    found = os.environ.get("ENGAGE_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RuntimeError(
            "Browser tests need Debian's chromium (apt-get install chromium); "
            "set ENGAGE_CHROMIUM to use another binary."
        )
    return found


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core on the page and return the violations of the given impacts."""
    if not AXE.exists():
        raise RuntimeError("axe-core is missing: run `npm ci` at the repository root")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v.get("impact") in impacts]
