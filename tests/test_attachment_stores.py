"""The attachment stores themselves: the folder and the database store keep one contract, the
database store streams in rows, and ``ENGAGE_ATTACHMENT_STORE`` chooses between them.

What a rep does with attachments (attach, download, send, followed links) is in
tests/test_attachments.py, which runs on both stores."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from engage import AttachmentStore, DatabaseStore, Engage, LocalFolderStore
from engage.models import StoredChunk
from tests.hostapp import db

MB = 1 << 20


class Pattern(io.RawIOBase):
    """``size`` bytes made up while they are read, so the test holds none of them."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self.left, 64 * 1024)
        chunk = bytes([self.left % 251]) * size
        buffer[:size] = chunk
        self.hash.update(chunk)
        self.left -= size
        return size


def sha256_of(stream) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(64 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(params=["folder", "database"])
def store(request, app, tmp_path):
    """Each store, inside the host app's context (the database store uses its engine)."""
    chosen = LocalFolderStore(tmp_path / "files") if request.param == "folder" else DatabaseStore()
    with app.app_context():
        yield chosen


# -- the contract ----------------------------------------------------------------------------------


def test_a_store_gives_back_what_it_kept_under_a_new_unguessable_key(store):
    assert isinstance(store, AttachmentStore)
    first = store.save(io.BytesIO(b"first"), filename="a.txt")
    second = store.save(io.BytesIO(b"first"), filename="a.txt")
    empty = store.save(io.BytesIO(b""), filename="empty.txt")
    assert len({first, second, empty}) == 3
    assert all(len(key) >= 32 and "a.txt" not in key for key in (first, second))
    with store.open(first) as stream:
        assert stream.read() == b"first"
    with store.open(empty) as stream:
        assert stream.read() == b""


@pytest.mark.parametrize("key", ["", "nothing-here", "../../etc/passwd", "a" * 300, "x y"])
def test_an_unknown_or_forged_key_is_a_key_error_and_deleting_it_is_no_error(store, key):
    with pytest.raises(KeyError):
        store.open(key)
    store.delete(key)


def test_deleted_bytes_are_gone_and_deleting_twice_is_no_error(store):
    key = store.save(io.BytesIO(b"bytes"), filename="b.bin")
    store.delete(key)
    store.delete(key)
    with pytest.raises(KeyError):
        store.open(key)


# -- the database store ----------------------------------------------------------------------------


def test_the_database_store_keeps_a_file_in_rows_of_one_megabyte(app):
    data = bytes(range(256)) * (10 * 1024 + 1)  # 2.5 MB and a bit
    with app.app_context():
        store = DatabaseStore()
        key = store.save(io.BytesIO(data), filename="scan.pdf")
        rows = db.session.execute(
            sa.select(StoredChunk.seq, sa.func.length(StoredChunk.data))
            .where(StoredChunk.store_key == key)
            .order_by(StoredChunk.seq)
        ).all()
        assert rows == [(0, MB), (1, MB), (2, len(data) - 2 * MB)]
        with store.open(key) as stream:
            assert stream.read() == data
        column = {
            c["name"]: c for c in sa.inspect(db.engine).get_columns(StoredChunk.__tablename__)
        }
        expected = "BYTEA" if db.engine.dialect.name == "postgresql" else "BLOB"
        assert str(column["data"]["type"]) == expected


def test_the_database_store_never_holds_a_whole_large_file_in_memory(app):
    size = 24 * MB
    with app.app_context():
        store = DatabaseStore()
        source = Pattern(size)
        tracemalloc.start()
        try:
            key = store.save(source, filename="big.bin")
            _, saving_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            with store.open(key) as stream:
                digest = sha256_of(stream)
            _, reading_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert digest == source.hash.hexdigest()
        # A row or two (1 MB each) and the driver's copy of one, never the 24 MB.
        assert saving_peak < 5 * MB, saving_peak
        assert reading_peak < 5 * MB, reading_peak


def test_the_database_store_reads_row_by_row_without_the_app_or_a_held_connection(app):
    # A download is streamed by the server after the request (and its app context) ended.
    with app.app_context():
        store = DatabaseStore(chunk_size=4)
        key = store.save(io.BytesIO(b"0123456789"), filename="digits.txt")
        stream = store.open(key)
    assert stream.read(6) == b"012345"
    assert stream.read() == b"6789"
    stream.close()

    with app.app_context():
        stream = store.open(key)
        assert stream.read(2) == b"01"
        store.delete(key)  # the rows go while the file is read: what was fetched is all there is
        with pytest.raises(OSError, match="deleted while it was read"):
            stream.read()
        stream.close()


def test_a_save_that_fails_half_way_leaves_no_rows(app):
    class Broken(io.RawIOBase):
        sent = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.sent >= 3 * MB:
                raise OSError("the client went away")
            buffer[: len(buffer)] = b"x" * len(buffer)
            self.sent += len(buffer)
            return len(buffer)

    with app.app_context():
        with pytest.raises(OSError, match="went away"):
            DatabaseStore().save(Broken(), filename="half.bin")
        assert db.session.scalar(sa.select(sa.func.count()).select_from(StoredChunk)) == 0


# -- choosing the store ----------------------------------------------------------------------------


class NoRecords:
    def get(self, ref):
        return None

    def search(self, text, *, limit=10):
        return []

    def find_by_email(self, address):
        return []


def host(tmp_path: Path, **config) -> tuple[Flask, SQLAlchemy]:
    app = Flask("host", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite3'}", **config)
    host_db = SQLAlchemy()
    host_db.init_app(app)
    return app, host_db


def test_the_folder_store_is_the_default(tmp_path):
    app, host_db = host(tmp_path)
    Engage(app, db=host_db, records=NoRecords())
    store = app.extensions["engage"].store
    assert isinstance(store, LocalFolderStore)
    assert store.root == tmp_path / "instance" / "engage-attachments"


def test_the_config_chooses_the_database_store(tmp_path):
    app, host_db = host(tmp_path, ENGAGE_ATTACHMENT_STORE="database")
    ext = Engage(app, db=host_db, records=NoRecords())
    with app.app_context():
        ext.create_all()
        store = ext.store
        assert isinstance(store, DatabaseStore)
        key = store.save(io.BytesIO(b"kept in the database"), filename="x.txt")
        assert host_db.session.get(StoredChunk, (key, 0)).data == b"kept in the database"


def test_a_store_passed_to_engage_wins_over_the_config(tmp_path):
    own = LocalFolderStore(tmp_path / "own")
    app, host_db = host(tmp_path, ENGAGE_ATTACHMENT_STORE="database")
    Engage(app, db=host_db, records=NoRecords(), attachment_store=own)
    assert app.extensions["engage"].store is own


def test_an_unknown_store_is_refused_with_the_setting_named(tmp_path):
    app, host_db = host(tmp_path, ENGAGE_ATTACHMENT_STORE="s3")
    with pytest.raises(ValueError, match="ENGAGE_ATTACHMENT_STORE='s3' is unknown"):
        Engage(app, db=host_db, records=NoRecords())
