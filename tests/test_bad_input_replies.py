"""Bad-input suite for replies: hostile and broken messages through the real doors.

Every message below is one a mail server or a webhook could hand over. Each goes in through the
inbound endpoint (and the poison ones through a real Dovecot mailbox and ``poll_imap``), and
each must come out as a ``200`` with a status, never a ``500``: read sensibly when it can be
(``matched``, with clean text and a ``Date`` that can be true), else ``unparseable`` with a
reason, noted once. A genuine reply sent right after it must still be recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import sqlalchemy as sa
from rq.timeouts import JobTimeoutException
from sqlalchemy.exc import OperationalError

import engage.events
import engage.replies
from engage.models import Email, Party, TrackingEvent, UnparseableMessage
from engage.replies import MIME_MAX_DEPTH, poll_imap
from tests.hostapp import db
from tests.support import post_inbound, reply, reply_events

# -- hostile messages ---------------------------------------------------------------------------

TEXT = b"Tuesday works for me."


def raw_reply(
    answers: str,
    *,
    headers: dict[str, bytes | None] | None = None,
    extra: list[bytes] | None = None,
    body: bytes = TEXT + b"\r\n",
    content_type: bytes | None = b"text/plain; charset=utf-8",
) -> bytes:
    """Ada's reply to ``answers`` as raw bytes, with ``headers`` replaced (``None`` drops one),
    ``extra`` header lines added and the body given: nothing is checked or encoded."""
    fields: dict[str, bytes | None] = {
        "From": b"Ada Lovelace <ada@example.com>",
        "To": b"Sam Seller <sam@host.test>",
        "Subject": b"Re: Quarterly review",
        "Date": format_datetime(datetime.now(UTC) - timedelta(seconds=30)).encode(),
        "Message-ID": b"<hostile@example.com>",
        "In-Reply-To": answers.encode(),
        "References": answers.encode(),
        "MIME-Version": b"1.0",
        "Content-Type": content_type,
    }
    fields.update(headers or {})
    lines = [b"%s: %s\r\n" % (k.encode(), v) for k, v in fields.items() if v is not None]
    return b"".join(lines) + b"".join(extra or []) + b"\r\n" + body


def nested(answers: str, levels: int) -> bytes:
    """Ada's reply with its text at the bottom of ``levels`` messages nested in one another:
    ``levels - 1`` multiparts, each the only part of the one above, and the text part."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(1, levels - 1)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(1, levels - 1)))
    body = b"--b0\r\n" + opening + b"Content-Type: text/plain\r\n\r\n" + TEXT + closing
    return raw_reply(
        answers,
        content_type=b'multipart/mixed; boundary="b0"',
        body=body + b"\r\n--b0--\r\n",
    )


def many_parts(answers: str, count: int) -> bytes:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(count))
    return raw_reply(
        answers, content_type=b'multipart/mixed; boundary="b"', body=parts + b"--b--\r\n"
    )


def deep_and_long(answers: str) -> bytes:
    """40 levels deep with 300,000 lines at the bottom: every line is checked against every
    open boundary, 12 million checks (Python took 11 s on 3 million lines 30 levels deep)."""
    return nested(answers, 42).replace(TEXT, b"x\r\n" * 300_000)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[str], bytes]
    status: str
    #: For ``unparseable``: what the reason says. For ``matched``: what the stored summary holds.
    says: str = ""


def date(value: bytes | None) -> Callable[[str], bytes]:
    return lambda mid: raw_reply(mid, headers={"Date": value})


#: Messages whose ``Date`` cannot be when the reply was written: stored at the receive time.
UNTRUSTED_DATES = [
    Case(
        "date 31 Dec 9999 -1200 (overflows UTC)",
        date(b"Fri, 31 Dec 9999 23:59:59 -1200"),
        "matched",
    ),
    Case("date in 2999", date(b"Tue, 1 Jan 2999 10:00:00 +0000"), "matched"),
    Case("date in the year 99999", date(b"Mon, 1 Jan 99999 10:00:00 +0000"), "matched"),
    Case(
        "date a week ahead",
        date(format_datetime(datetime.now(UTC) + timedelta(days=7)).encode()),
        "matched",
    ),
    Case("date before 1970", date(b"Wed, 31 Dec 1969 23:59:59 +0000"), "matched"),
    Case("date in 1900", date(b"Mon, 1 Jan 1900 00:00:00 +0000"), "matched"),
    Case("date before the email was sent", date(b"Mon, 3 Jun 2024 10:00:00 +0000"), "matched"),
    Case("date unparseable", date(b"the day after tomorrow \x00\xff"), "matched"),
    Case("date zone out of range", date(b"Mon, 3 Jun 2024 10:00:00 +9999"), "matched"),
    Case("date missing", date(None), "matched"),
    Case(
        "date twice, the first far ahead",
        lambda mid: raw_reply(
            mid,
            headers={"Date": b"Fri, 31 Dec 9999 23:59:59 -1200"},
            extra=[b"Date: Mon, 3 Jun 2024 10:00:00 +0000\r\n"],
        ),
        "matched",
    ),
]

NUL_HEADERS = {"Subject": b"Re: Quarterly\x00 review\x07", "Message-ID": b"<nul\x00@example.com>"}

CASES = [
    *UNTRUSTED_DATES,
    # -- structure
    Case("nested 1,500 levels", lambda mid: nested(mid, 1_500), "unparseable", "nested"),
    Case("nested 10,000 levels", lambda mid: nested(mid, 10_000), "unparseable", "nested"),
    Case(
        "nested one level too deep",
        lambda mid: nested(mid, MIME_MAX_DEPTH + 1),
        "unparseable",
        "nested",
    ),
    Case(
        "nested as deep as allowed",
        lambda mid: nested(mid, MIME_MAX_DEPTH),
        "matched",
        TEXT.decode(),
    ),
    Case("2,000 parts", lambda mid: many_parts(mid, 2_000), "unparseable", "1000 MIME parts"),
    Case(
        "20,000 headers",
        lambda mid: raw_reply(mid, extra=[b"X-Junk: x\r\n"] * 20_000),
        "unparseable",
        "header lines",
    ),
    Case("40 levels deep over 300,000 lines", deep_and_long, "unparseable", "too long"),
    # -- headers
    Case(
        "subject of 100,000 encoded words",
        lambda mid: raw_reply(mid, headers={"Subject": b"=?utf-8?q?Re=3A_a?= " * 100_000}),
        "matched",
        "Re: a",
    ),
    Case(
        "references of 100,000 ids, engage's last",
        lambda mid: raw_reply(
            mid,
            headers={
                "In-Reply-To": None,
                "References": b"".join(b"<%d@elsewhere.example> " % i for i in range(100_000))
                + mid.encode(),
            },
        ),
        "matched",
    ),
    Case(
        "from with 5,000 nested comments",
        lambda mid: raw_reply(mid, headers={"From": b"Ada <ada@example.com> " + b"(" * 5_000}),
        "matched",
        TEXT.decode(),
    ),
    Case(
        "content-type with 3,000 nested comments",
        lambda mid: raw_reply(mid, content_type=b"text/plain " + b"(" * 3_000),
        "matched",
    ),
    Case(
        "to with a broken group",
        lambda mid: raw_reply(mid, headers={"To": b"g: a@b; " * 2_000}),
        "matched",
    ),
    Case(
        "message-id all brackets",
        lambda mid: raw_reply(mid, headers={"Message-ID": b"<" * 5_000}),
        "matched",
    ),
    Case("message-id missing", lambda mid: raw_reply(mid, headers={"Message-ID": None}), "matched"),
    Case(
        "message-id twice",
        lambda mid: raw_reply(mid, extra=[b"Message-ID: <another@example.com>\r\n"]),
        "matched",
    ),
    Case(
        "message-id 8-bit",
        lambda mid: raw_reply(mid, headers={"Message-ID": b"<caf\xc3\xa9\xff@example.com>"}),
        "matched",
    ),
    Case(
        "NUL and control characters in headers and body",
        lambda mid: raw_reply(mid, headers=NUL_HEADERS, body=b"Tues\x00day works\x1b for me.\r\n"),
        "matched",
        "Re: Quarterly review\nTuesday works for me.",
    ),
    Case(
        "an encoded line break in the subject",
        lambda mid: raw_reply(
            mid, headers={"Subject": b"=?utf-8?q?Re=3A_hi=0D=0AX-Autoreply=3A_yes?="}
        ),
        "matched",
        "Re: hi X-Autoreply: yes\n",
    ),
    Case(
        "bare CR line ends",
        lambda mid: raw_reply(mid).replace(b"\r\n", b"\r"),
        "matched",
        TEXT.decode(),
    ),
    Case(
        "LF line ends", lambda mid: raw_reply(mid).replace(b"\r\n", b"\n"), "matched", TEXT.decode()
    ),
    Case(
        "a continuation line of only spaces",
        lambda mid: raw_reply(mid, headers={"Subject": b"Re: Quarterly\r\n   \r\n review"}),
        "matched",
        "Re: Quarterly review",
    ),
    Case(
        "8-bit UTF-8 headers (RFC 6532)",
        lambda mid: raw_reply(mid, headers={"Subject": "Re: Grüße, café".encode()}),
        "matched",
        "Re: Grüße, café",
    ),
    Case(
        "8-bit Latin-1 headers",
        lambda mid: raw_reply(mid, headers={"Subject": "Re: café".encode("latin-1")}),
        "matched",
        "Re: caf\N{REPLACEMENT CHARACTER}",
    ),
    # -- bodies
    Case(
        "an unknown charset",
        lambda mid: raw_reply(mid, content_type=b"text/plain; charset=x-nonsense"),
        "matched",
        TEXT.decode(),
    ),
    Case(
        "a charset that is no text encoding",
        lambda mid: raw_reply(mid, content_type=b"text/plain; charset=zlib"),
        "matched",
        TEXT.decode(),
    ),
    Case(
        "bytes that are not the declared charset",
        lambda mid: raw_reply(mid, body=b"Tuesday \xff\xfe works.\r\n"),
        "matched",
        "Tuesday \N{REPLACEMENT CHARACTER}\N{REPLACEMENT CHARACTER} works.",
    ),
    Case(
        "8-bit UTF-8 text declared ASCII",
        lambda mid: raw_reply(mid, content_type=b"text/plain", body="Grüße!\r\n".encode()),
        "matched",
        "Grüße!",
    ),
    Case(
        "broken base64",
        lambda mid: raw_reply(
            mid, extra=[b"Content-Transfer-Encoding: base64\r\n"], body=b"!!$$=\r\n"
        ),
        "matched",
    ),
    Case(
        "a body that is not text",
        lambda mid: raw_reply(
            mid, content_type=b"image/png", body=b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        ),
        "matched",
    ),
    Case(
        "HTML of a million tags",
        lambda mid: raw_reply(mid, content_type=b"text/html", body=b"<div>" * 1_000_000),
        "matched",
    ),
    # -- blobs
    Case("a binary blob", lambda mid: bytes(range(256)) * 100, "unparseable", "no header fields"),
    Case("NUL bytes", lambda mid: b"\x00" * 1000, "unparseable", "no header fields"),
    Case(
        "text without headers",
        lambda mid: b"Tuesday works for me.\r\n",
        "unparseable",
        "no header fields",
    ),
]


def unparseable_rows(app) -> list[UnparseableMessage]:
    with app.app_context():
        rows = db.session.scalars(sa.select(UnparseableMessage).order_by(UnparseableMessage.id))
        found = list(rows)
        db.session.expunge_all()
        return found


def events_of(app, address: str) -> list[TrackingEvent]:
    return [e for e in reply_events(app) if e.party_id == party_id(app, address)]


def party_id(app, address: str) -> int:
    with app.app_context():
        return db.session.scalars(sa.select(Party.id).where(Party.address == address)).one()


def genuine(sent: dict) -> bytes:
    """Grace's reply, a person's ordinary answer."""
    return reply(sent["message_id"], sender="grace@example.com", message_id="<genuine@example.com>")


# -- through the inbound endpoint ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_message_is_answered_200_once_and_a_genuine_reply_still_counts(app, sent, case):
    hostile = case.build(sent["message_id"])
    clock = time.monotonic()
    first = post_inbound(app, hostile)
    took = time.monotonic() - clock
    ended = datetime.now(UTC)
    after = post_inbound(app, genuine(sent))
    again = post_inbound(app, hostile)

    assert first.status_code == 200, first.get_data(as_text=True)[:500]
    answer = first.get_json()
    assert answer["status"] == case.status
    assert took < 10, f"ingesting took {took:.1f}s"  # the unbounded parser took minutes on some
    assert after.status_code == 200
    assert after.get_json()["status"] == "matched"
    assert len(events_of(app, "grace@example.com")) == 1
    assert again.status_code == 200
    assert again.get_json()["status"] == "duplicate"  # recorded once, by either way of noting

    ada = events_of(app, "ada@example.com")
    rows = unparseable_rows(app)
    if case.status == "unparseable":
        assert case.says in answer["reason"]
        assert (answer["email_id"], answer["party_id"]) == (None, None)
        assert again.get_json()["reason"] == f"unparseable: {answer['reason']}"
        assert ada == []
        [row] = rows
        assert (row.source, row.size, row.reason) == ("inbound", len(hostile), answer["reason"])
        return
    assert rows == []
    [event] = ada
    assert answer["party_id"] == event.party_id
    assert case.says in event.summary
    assert "\x00" not in event.summary and "\r" not in event.summary
    assert event.summary.split("\n")[0].startswith("Re: ")  # the subject, on its own line
    assert event.occurred_at <= ended


@pytest.mark.parametrize("case", UNTRUSTED_DATES, ids=[c.name for c in UNTRUSTED_DATES])
def test_a_date_that_cannot_be_true_gives_way_to_the_time_the_reply_came(app, sent, case):
    began = datetime.now(UTC)
    assert post_inbound(app, case.build(sent["message_id"])).get_json()["status"] == "matched"
    ended = datetime.now(UTC)
    [event] = reply_events(app)
    assert began <= event.occurred_at <= ended
    with app.app_context():
        replied_at = db.session.get(Party, event.party_id).replied_at
    assert began <= replied_at <= ended


def test_a_date_between_the_email_and_now_is_kept(app, sent):
    with app.app_context():
        db.session.execute(
            sa.update(Email)
            .where(Email.id == sent["email_id"])
            .values(submitted_at=datetime.now(UTC) - timedelta(hours=2))
        )
        db.session.commit()
    written = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    assert (
        post_inbound(app, reply(sent["message_id"], date=written)).get_json()["status"] == "matched"
    )
    [event] = reply_events(app)
    assert event.occurred_at == written


def test_two_different_messages_with_one_message_id_are_stored_once(app, sent):
    first = raw_reply(sent["message_id"], body=b"Tuesday works.\r\n")
    second = raw_reply(sent["message_id"], body=b"Actually, Wednesday.\r\n")
    assert post_inbound(app, first).get_json()["status"] == "matched"
    assert post_inbound(app, second).get_json()["status"] == "duplicate"
    [event] = reply_events(app)
    assert event.summary.endswith("Tuesday works.")


def test_a_database_failure_answers_503_so_the_sender_retries(app, sent, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("INSERT INTO engage_event", {}, Exception("server closed"))

    with monkeypatch.context() as patched:
        patched.setattr(engage.events, "record_reply", down)
        failed = post_inbound(app, reply(sent["message_id"]))
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "60"
    assert "try again" in failed.get_json()["error"]
    assert unparseable_rows(app) == []  # engage's failure says nothing about the message
    assert post_inbound(app, reply(sent["message_id"])).get_json()["status"] == "matched"


# -- through the IMAP mailbox -------------------------------------------------------------------


def seen(mailbox) -> list[bool]:
    return [r"\Seen" in flags for flags in mailbox.flags()]


def poll(app) -> int:
    with app.app_context():
        return poll_imap()


def test_an_unparseable_message_in_the_mailbox_is_noted_once_and_the_rest_is_read(
    app, sent, mailbox
):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(nested(sent["message_id"], 1_500))
    mailbox.append(genuine(sent))

    assert poll(app) == 2
    assert seen(mailbox) == [True, True]
    [row] = unparseable_rows(app)
    assert (row.source, row.message_id) == ("imap", "<hostile@example.com>")
    assert "nested" in row.reason
    assert len(events_of(app, "grace@example.com")) == 1

    assert poll(app) == 0  # nothing unseen is left
    assert len(unparseable_rows(app)) == 1


def test_a_far_future_date_read_from_the_mailbox_is_the_time_it_was_read(app, sent, mailbox):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(
        raw_reply(sent["message_id"], headers={"Date": b"Fri, 31 Dec 9999 23:59:59 -1200"})
    )
    began = datetime.now(UTC)
    assert poll(app) == 1
    [event] = reply_events(app)
    assert began <= event.occurred_at <= datetime.now(UTC)


def poison_record_reply(fail: Callable[[int], bool]):
    """``record_reply`` failing with a database error for the reply whose subject says
    "poison", on the tries for which ``fail(try)`` holds; the rest go through."""
    real = engage.events.record_reply
    tries = {"n": 0}

    def record_reply(session, party, **kwargs):
        if "poison" in kwargs["subject"]:
            tries["n"] += 1
            if fail(tries["n"]):
                raise OperationalError("INSERT INTO engage_event", {}, Exception("deadlock"))
        return real(session, party, **kwargs)

    record_reply.tries = tries  # type: ignore[attr-defined]
    return record_reply


def test_a_message_that_keeps_failing_is_given_up_on_after_three_polls(
    app, sent, mailbox, monkeypatch, caplog
):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(reply(sent["message_id"], subject="Re: poison", message_id="<poison@x>"))
    mailbox.append(genuine(sent))
    failing = poison_record_reply(lambda n: True)
    monkeypatch.setattr(engage.events, "record_reply", failing)

    assert poll(app) == 1  # the genuine reply; the poison one stays unseen
    assert seen(mailbox) == [False, True]
    assert poll(app) == 0
    assert seen(mailbox) == [False, True]
    assert unparseable_rows(app) == []
    assert poll(app) == 1  # the third failure: given up on
    assert seen(mailbox) == [True, True]
    assert failing.tries["n"] == 3

    [row] = unparseable_rows(app)
    assert row.reason.startswith("ingesting it failed 3 times, last with OperationalError")
    assert row.message_id == "<poison@x>"
    assert "attempt 3 of 3" in caplog.text and "deadlock" in caplog.text
    assert poll(app) == 0
    assert failing.tries["n"] == 3  # never tried again
    assert len(events_of(app, "grace@example.com")) == 1
    assert events_of(app, "ada@example.com") == []


def test_a_database_error_that_passes_turns_no_good_message_unparseable(
    app, sent, mailbox, monkeypatch, redis_client
):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(reply(sent["message_id"], subject="Re: poison", message_id="<poison@x>"))
    monkeypatch.setattr(engage.events, "record_reply", poison_record_reply(lambda n: n <= 2))

    assert poll(app) == 0
    assert poll(app) == 0
    assert poll(app) == 1  # the third try went through
    assert seen(mailbox) == [True]
    [event] = events_of(app, "ada@example.com")
    assert event.summary.startswith("Re: poison")
    assert unparseable_rows(app) == []
    assert redis_client.keys("engage:imap:attempts:*") == []  # its count is forgotten


def test_while_the_database_is_down_no_message_is_given_up_on(app, sent, mailbox, monkeypatch):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(reply(sent["message_id"], subject="Re: poison", message_id="<poison@x>"))

    def down(*args, **kwargs):
        raise OperationalError("INSERT INTO engage_unparseable_message", {}, Exception("gone"))

    with monkeypatch.context() as patched:
        patched.setattr(engage.events, "record_reply", poison_record_reply(lambda n: True))
        patched.setattr(engage.replies, "record_unparseable", down)
        for _poll in range(4):
            assert poll(app) == 0
    assert seen(mailbox) == [False]

    assert poll(app) == 1  # the database is back: the reply is recorded, not given up on
    assert len(events_of(app, "ada@example.com")) == 1
    assert unparseable_rows(app) == []


def test_a_message_that_stops_the_poll_is_not_tried_a_fourth_time(app, sent, mailbox, monkeypatch):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(reply(sent["message_id"], message_id="<slow@x>"))
    calls = []

    def times_out(raw: bytes, *, source: str):
        calls.append(source)
        raise JobTimeoutException("Task exceeded maximum timeout value (600 seconds)")

    monkeypatch.setattr(engage.replies, "ingest", times_out)
    for _poll in range(3):
        with pytest.raises(JobTimeoutException):
            poll(app)
    assert seen(mailbox) == [False]

    assert poll(app) == 1
    assert len(calls) == 3
    assert seen(mailbox) == [True]
    [row] = unparseable_rows(app)
    assert row.reason == "ingesting it stopped the poll 3 times"
