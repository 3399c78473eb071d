"""``python -m engage.demo``: run the demo CRM with everything it needs (see :mod:`.runner`)."""

from __future__ import annotations

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
