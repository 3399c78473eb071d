"""Where attachment bytes live: a small, pluggable store.

engage keeps attachment metadata in its tables and the bytes in a store with three operations.
The default keeps files in a local folder (:class:`LocalFolderStore`); web and worker processes
on different machines need a store they share: :class:`engage.DatabaseStore` keeps the bytes in
the host's database (``ENGAGE_ATTACHMENT_STORE = "database"``), and a host can pass any object
with the same methods (S3, a document management system, …) as ``Engage(attachment_store=…)``.
The README shows an S3 store in a dozen lines.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable


@runtime_checkable
class AttachmentStore(Protocol):
    """Keeps attachment bytes under opaque keys chosen by the store."""

    def save(self, stream: BinaryIO, *, filename: str) -> str:
        """Store the bytes read from ``stream`` and return their new key."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the stored bytes for reading. :raises KeyError: for an unknown key."""
        ...

    def delete(self, key: str) -> None:
        """Forget the bytes under ``key``; an unknown key is not an error."""
        ...


class LocalFolderStore:
    """Keeps each attachment as one file in a folder, under a random, unguessable name.

    :param root: the folder; created on first save.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        # Keys are ours (hex), so anything else is a forged or corrupt key: refuse it rather
        # than let it walk out of the folder.
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise KeyError(key)
        return self.root / key[:2] / key

    def save(self, stream: BinaryIO, *, filename: str) -> str:
        key = secrets.token_hex(20)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            while chunk := stream.read(1 << 16):
                out.write(chunk)
        return key

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        if not path.is_file():
            raise KeyError(key)
        return path.open("rb")

    def delete(self, key: str) -> None:
        with contextlib.suppress(KeyError):
            self._path(key).unlink(missing_ok=True)
