"""Attachment bytes in the host's database, for web and worker processes on different machines.

:class:`DatabaseStore` is an :class:`engage.storage.AttachmentStore` that keeps each file in
engage's table ``engage_attachment_chunk`` (:class:`engage.models.StoredChunk`), on the host's
database: ``bytea`` on PostgreSQL, BLOB on SQLite. Whatever process can reach the database can
read the files, so a worker delivers what a web process on another machine stored, with no
shared folder. ``ENGAGE_ATTACHMENT_STORE = "database"`` selects it.

It streams both ways. A file is cut into rows of :data:`CHUNK_SIZE` (1 MB): ``bytea`` and BLOB
values are read and written whole, so one row per file would hold the whole file in memory
(twice over on PostgreSQL, whose text protocol sends ``bytea`` hex-encoded). Saving reads the
input in 64 KB pieces and writes a row each time a megabyte has gathered, all in one
transaction, so a file is there completely or not at all. :meth:`DatabaseStore.open` returns a
reader that fetches one row at a time, each on a short connection of its own: the download that
Flask streams after the request has ended needs no session, and no connection is held while the
client reads.

The store writes on its own connection and commits at once, as a folder store writes a file:
the attachment row that names the key is the session's business, and the callers delete the
bytes again when that row is not committed. So the database must hand out connections of their
own: an in-memory SQLite database, whose one connection the session shares, will not do.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .context import current_engage
from .models import StoredChunk

#: The bytes of one row: the most a save or a read holds in memory at once (plus one piece).
CHUNK_SIZE = 1 << 20
#: How much a save asks its input for at a time; ``_MeasuredReader`` stops past its limit
#: after at most one such read.
READ_SIZE = 1 << 16

_KEY_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class DatabaseStore:
    """Keeps attachment bytes in the host's database, in rows of ``chunk_size`` bytes.

    :param engine: the database; by default engage's (the host's Flask-SQLAlchemy default
        engine, looked up on each call, so one store serves every app it is registered on).
        The table must exist there: :meth:`engage.Engage.create_all` or the host's migration
        makes it with engage's other tables.
    :param chunk_size: the bytes per row.
    """

    def __init__(
        self, engine: Engine | Callable[[], Engine] | None = None, *, chunk_size: int = CHUNK_SIZE
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self._engine = engine
        self.chunk_size = chunk_size

    def engine(self) -> Engine:
        """The engine the bytes are kept on."""
        if self._engine is None:
            return current_engage.db.engine
        if isinstance(self._engine, Engine):
            return self._engine
        return self._engine()

    def save(self, stream: BinaryIO, *, filename: str) -> str:
        """Copy ``stream`` into new rows under a new, unguessable key, and commit them."""
        key = secrets.token_urlsafe(30)
        seq = 0
        buffer = bytearray()
        with self.engine().begin() as conn:
            while piece := stream.read(READ_SIZE):
                buffer += piece
                while len(buffer) >= self.chunk_size:
                    self._insert(conn, key, seq, bytes(buffer[: self.chunk_size]))
                    del buffer[: self.chunk_size]
                    seq += 1
            if buffer or seq == 0:
                self._insert(conn, key, seq, bytes(buffer))
        return key

    @staticmethod
    def _insert(conn: sa.Connection, key: str, seq: int, data: bytes) -> None:
        conn.execute(sa.insert(StoredChunk), {"store_key": key, "seq": seq, "data": data})

    def open(self, key: str) -> BinaryIO:
        """A reader of the bytes under ``key`` that fetches one row at a time.

        :raises KeyError: when no file has that key.
        """
        if not _well_formed(key):
            raise KeyError(key)
        engine = self.engine()
        with engine.connect() as conn:
            count = conn.scalar(sa.select(sa.func.count()).where(StoredChunk.store_key == key))
        if not count:
            raise KeyError(key)
        return io.BufferedReader(_ChunkReader(engine, key, count), buffer_size=READ_SIZE)

    def delete(self, key: str) -> None:
        """Delete the rows of ``key``; an unknown key is not an error."""
        if not _well_formed(key):
            return
        with self.engine().begin() as conn:
            conn.execute(sa.delete(StoredChunk).where(StoredChunk.store_key == key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(chunk_size={self.chunk_size})"


def _well_formed(key: str) -> bool:
    # Our keys are token_urlsafe(30): 40 URL-safe characters. Anything else was never stored.
    return isinstance(key, str) and 0 < len(key) <= 64 and set(key) <= _KEY_CHARACTERS


class _ChunkReader(io.RawIOBase):
    """The rows of one stored file, read in order, one row in memory at a time."""

    def __init__(self, engine: Engine, key: str, count: int) -> None:
        self._engine = engine
        self._key = key
        self._count = count
        self._next = 0
        self._chunk = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("I/O operation on closed file")
        while self._offset >= len(self._chunk):
            if self._next >= self._count:
                return 0
            self._chunk = self._fetch(self._next)
            self._offset = 0
            self._next += 1
        size = min(len(buffer), len(self._chunk) - self._offset)
        buffer[:size] = self._chunk[self._offset : self._offset + size]
        self._offset += size
        return size

    def _fetch(self, seq: int) -> bytes:
        with self._engine.connect() as conn:
            data = conn.scalar(
                sa.select(StoredChunk.data).where(
                    StoredChunk.store_key == self._key, StoredChunk.seq == seq
                )
            )
        if data is None:
            raise OSError(f"the stored file {self._key[:8]}… was deleted while it was read")
        return bytes(data)

    def close(self) -> None:
        self._chunk = b""
        super().close()
