"""Row ids as they arrive from URLs, forms and cursors: plain values, checked before use.

A database column holds a signed 64-bit integer; a larger number can name no row, and handing
it to the database makes the driver raise instead of finding nothing. ``str.isdigit`` is no
check either: it accepts ``²`` and other Unicode digits that ``int()`` refuses or misreads.
"""

from __future__ import annotations

import re

#: The largest id a row can have (PostgreSQL's bigint, SQLite's integer).
MAX_ID = 2**63 - 1

_DIGITS = re.compile(r"[0-9]{1,19}")


def parse_id(text: str | None) -> int | None:
    """``text`` as a row id: ASCII digits only, 0 to :data:`MAX_ID`; ``None`` for anything else."""
    if text is None or not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None
