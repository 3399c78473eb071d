"""The write-ahead spool of tracking events: each web process's own record of what it noted.

Redis is the conveyor belt between the tracking endpoints and the worker that stores their
events (DESIGN "Tracking"). A Redis that is flushed, or restarted empty, forgets whatever waits
on it, and nothing kept *in* Redis survives that: not a list, not a stream with its consumer
group and pending entries. So each web process also appends every event it notes to a file of
its own on local disk, before the event goes to Redis, and keeps it there until the worker
acknowledges it. When Redis turns out to have lost events, the process pushes the events not
yet acknowledged again (:mod:`engage.tracking` decides when). An event pushed twice is stored
once: the worker dedupes by event id.

The spool is one folder (``ENGAGE_EVENT_SPOOL_DIR``) on the web host's local disk, shared by the
host's web processes, each with files of its own:

- ``<name>.lock``, locked (``flock``) for as long as the process named ``<name>`` (host, pid and
  a random part) lives: the kernel releases it when the process ends, however it ends;
- ``<name>.<n>.events``, its segments: one JSON event per line, each appended with a single
  ``write`` (so a crash of the process loses nothing the kernel already has), made durable with
  ``fsync`` in batches by the process's event thread (:meth:`EventSpool.sync`). A segment is
  deleted once every event in it is acknowledged, or when it was rotated out and found empty.

A process that finds the segments of a process that is gone (its lock is free) *adopts* them
(:meth:`EventSpool.adopt_orphans`): it copies their events into its own spool, relabelled as
its own, deletes them, and pushes the events again. Web processes look at their first request
and every round of their event thread, so a restarted server picks up what its predecessor left.

This module knows files and lines only: no Flask, no Redis. It holds the ids of the events that
wait for acknowledgement in memory (about a hundred bytes each); the events themselves are read
back from disk only when they must be pushed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: A segment is closed and a new one started past this size, or this age (seconds).
SEGMENT_BYTES = 4 * 1024 * 1024
SEGMENT_SECONDS = 60.0

_LOCK = ".lock"
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)\.(?P<number>\d+)\.events$")


@dataclass(eq=False)
class _Segment:
    path: Path
    started: float
    #: The ids of its events not yet acknowledged.
    waiting: set[str] = field(default_factory=set)
    size: int = 0


def process_name() -> str:
    """A name for this process's spool files: host, pid and a random part, file-name safe."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class EventSpool:
    """One process's spool in ``folder``. Thread-safe; :meth:`sync` and :meth:`adopt_orphans`
    are meant for one thread (the process's event thread), :meth:`append` for any."""

    def __init__(self, folder: str | os.PathLike[str], name: str | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name or process_name()
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._where: dict[str, _Segment] = {}
        self._number = 0
        self._dirty = False
        self._lock_fd = self._hold_lock()
        self._fd = self._new_segment()
        _sync_folder(self.folder)

    def _hold_lock(self) -> int:
        # Locked under a temporary name, then renamed: no other process ever finds this lock
        # file unlocked while this process lives.
        temporary = self.folder / f".{self.name}.tmp"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(temporary, self.folder / f"{self.name}{_LOCK}")
        return fd

    def _new_segment(self) -> int:
        self._number += 1
        path = self.folder / f"{self.name}.{self._number:06d}.events"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._segments.append(_Segment(path, time.monotonic()))
        return fd

    @property
    def waiting(self) -> int:
        """How many events wait for acknowledgement."""
        return len(self._where)

    def append(self, event_id: str, line: str) -> None:
        """Spool one event (``line``: its JSON, without a newline) until ``event_id`` is
        acknowledged. One ``write``, no ``fsync`` (see :meth:`sync`).

        :raises OSError: when the disk refuses the write (or the spool is closed).
        """
        data = line.encode() + b"\n"
        with self._lock:
            _write_all(self._fd, data)
            segment = self._segments[-1]
            segment.size += len(data)
            segment.waiting.add(event_id)
            earlier = self._where.get(event_id)
            if earlier is not None and earlier is not segment:
                earlier.waiting.discard(event_id)
            self._where[event_id] = segment
            self._dirty = True

    def acknowledge(self, ids: Iterable[str]) -> int:
        """Forget the events ``ids`` (the worker is done with them); how many were waiting."""
        done = 0
        with self._lock:
            for event_id in ids:
                segment = self._where.pop(event_id, None)
                if segment is not None:
                    segment.waiting.discard(event_id)
                    done += 1
            self._drop_finished()
        return done

    def sync(self) -> None:
        """Make what was appended durable (``fsync``), start a new segment when the current one
        is big, old or fully acknowledged, and delete the segments fully acknowledged.

        The ``fsync`` runs outside the lock, so requests appending meanwhile do not wait for it.
        """
        with self._lock:
            fd = self._fd
            if fd < 0:
                return
            dirty, self._dirty = self._dirty, False
            current = self._segments[-1]
            rotate = current.size > 0 and (
                not current.waiting
                or current.size >= SEGMENT_BYTES
                or time.monotonic() - current.started >= SEGMENT_SECONDS
            )
            if rotate:
                self._fd = self._new_segment()
            self._drop_finished()
        if dirty:
            os.fsync(fd)
        if rotate:
            os.close(fd)
            _sync_folder(self.folder)

    def _drop_finished(self) -> None:
        # Under the lock: every segment but the current one is closed.
        keep = []
        for segment in self._segments[:-1]:
            if segment.waiting:
                keep.append(segment)
            else:
                segment.path.unlink(missing_ok=True)
        self._segments[:-1] = keep

    def unacknowledged(self, only: set[str] | None = None) -> Iterator[str]:
        """The lines of the events still waiting (of ``only`` those, when given), oldest first,
        read back from disk."""
        with self._lock:
            todo = [
                (s.path, set(s.waiting) if only is None else s.waiting & only)
                for s in self._segments
                if s.waiting
            ]
        for path, ids in todo:
            for line in _lines(path) if ids else ():
                event_id = _id_of(line)
                if event_id in ids:
                    ids.discard(event_id)
                    yield line

    def adopt_orphans(self) -> list[tuple[str, str]]:
        """Take over the segments of processes that are gone: their events are appended to
        this spool, relabelled as this process's (``"src"``), and their files deleted. Returns
        the adopted events as ``(id, line)``, to be pushed again."""
        adopted: list[tuple[str, str]] = []
        for name in _dead_processes(self.folder):
            if name == self.name:
                continue
            paths = sorted(
                self.folder / f
                for f in _listdir(self.folder)
                if (m := _SEGMENT.match(f)) and m.group("name") == name
            )
            for path in paths:
                for line in _lines(path):
                    try:
                        event = json.loads(line)
                        event_id = str(event["id"])
                    except (ValueError, TypeError, KeyError):
                        continue  # a torn last line: the process died in the middle of it
                    event["src"] = self.name
                    relabelled = json.dumps(event)
                    self.append(event_id, relabelled)
                    adopted.append((event_id, relabelled))
            self.sync()  # durable here before the originals go
            for path in paths:
                path.unlink(missing_ok=True)
            (self.folder / f"{name}{_LOCK}").unlink(missing_ok=True)
        return adopted

    def close(self) -> None:
        """Make the spool durable and let it go. Events still waiting stay on disk for the
        next process to adopt; a spool with none left is deleted."""
        with self._lock:
            fd, self._fd = self._fd, -1
            finished = not self._where
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)
        if finished:
            for segment in self._segments:
                segment.path.unlink(missing_ok=True)
            (self.folder / f"{self.name}{_LOCK}").unlink(missing_ok=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def forget(self) -> None:
        """In a forked child: drop the inherited file descriptors without touching the files,
        so that the parent's lock is released when the parent ends. Takes no lock (a parent's
        thread may have held it at the fork)."""
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1


def has_orphans(folder: str | os.PathLike[str]) -> bool:
    """Whether processes that are gone left spool files in ``folder``."""
    return any(True for _name in _dead_processes(Path(folder)))


def _dead_processes(folder: Path) -> Iterator[str]:
    """The names of processes with files in ``folder`` that are gone. While the caller works on
    a name, that process's lock is held, so two processes never adopt the same files at once.
    """
    # Segments first, then locks: a process locks before it writes its first segment, so a
    # segment without a lock listed after it belongs to a process that is gone.
    segments = {m.group("name") for f in _listdir(folder) if (m := _SEGMENT.match(f))}
    locks = {f[: -len(_LOCK)] for f in _listdir(folder) if f.endswith(_LOCK)}
    for name in sorted(segments | locks):
        if name not in locks:
            yield name
            continue
        try:
            fd = os.open(folder / f"{name}{_LOCK}", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # adopted by another process meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive (this process's own lock reads as alive too)
            yield name
        finally:
            os.close(fd)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _lines(path: Path) -> Iterator[str]:
    try:
        with path.open("rb") as f:
            for raw in f:
                if raw.endswith(b"\n"):
                    yield raw[:-1].decode("utf-8", "replace")
    except FileNotFoundError:
        return


def _id_of(line: str) -> str | None:
    try:
        return str(json.loads(line)["id"])
    except (ValueError, TypeError, KeyError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_folder(folder: Path) -> None:
    # A new or deleted file is durable once its folder is.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
