"""Attachments through the compose panel's endpoints and on the SMTP wire (SPEC S16–S18).

Every test that uses the host app runs twice: with the attachment bytes in a folder
(``ENGAGE_ATTACHMENT_STORE = "folder"``) and in the host's database (``"database"``).
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
from datetime import timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage.attachments import clean_filename, content_type_for
from engage.i18n import format_size, read
from engage.models import (
    Attachment,
    DeliveryState,
    Email,
    EmailStatus,
    EventKind,
    StoredChunk,
    TrackingEvent,
    utcnow,
)
from engage.tracking import QUEUE_KEY, new_token
from tests.hostapp import Customer, db
from tests.support import (
    CHROME,
    ROOT,
    compose_fields,
    csrf_token,
    drain,
    rq_worker,
    run_delivery,
    sign_in,
    worker_env,
)

PREFIX = "/crm/engage"
PUBLIC = "https://crm.example.com"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


@pytest.fixture(params=["folder", "database"])
def app_config(request, tmp_path):
    """The attachment store of the host app: a fresh folder, or the host's database."""
    return {
        "ENGAGE_ATTACHMENT_STORE": request.param,
        "ENGAGE_ATTACHMENT_DIR": str(tmp_path / "attachments"),
    }


@pytest.fixture
def files_app(app, smtp_sink):
    """The host app with its attachment store (see ``app_config``) and a real SMTP sink."""
    app.config.update(ENGAGE_SMTP_URL=smtp_sink.url, ENGAGE_PUBLIC_URL=PUBLIC)
    return app


# -- helpers ---------------------------------------------------------------------------------------


def compose_form(client, **fields) -> dict:
    """What the compose form posts: its fields as a rep filled them in."""
    defaults = {
        "to": "ada@example.com",
        "cc": "",
        "subject": "Our offer",
        "body": "Hello Ada,\n\nthe offer is attached.",
        "follow": "1",
    }
    return compose_fields(client, **(defaults | fields))


def a_file(name="offer.pdf", data=PDF, content_type="application/pdf"):
    return (io.BytesIO(data), name, content_type)


def draft_with(client, *files, **fields) -> int:
    """A new draft made by attaching ``files`` one after the other; returns its id."""
    first, *rest = files
    response = client.post(
        f"{PREFIX}/compose/attachments",
        data={**compose_form(client, **fields), "attachment": first},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    email_id = int(re.search(r"/emails/(\d+)/edit", response.headers["Location"]).group(1))
    for upload in rest:
        response = client.post(
            f"{PREFIX}/emails/{email_id}/attachments",
            data={**compose_form(client, **fields), "attachment": upload},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
    return email_id


def attachments_of(app, email_id) -> list[Attachment]:
    with app.app_context():
        rows = (
            db.session.query(Attachment).filter_by(email_id=email_id).order_by(Attachment.id).all()
        )
        db.session.expunge_all()
        return rows


def email_row(app, email_id) -> Email:
    with app.app_context():
        email = db.session.get(Email, email_id)
        _ = [(p.token, p.attachment_opens) for p in email.parties]
        db.session.expunge_all()
        return email


def stored(app, key) -> bytes | None:
    with app.app_context():
        try:
            with app.extensions["engage"].store.open(key) as stream:
                return stream.read()
        except KeyError:
            return None


def stored_count(app) -> int:
    """How many files the app's attachment store holds."""
    if app.config["ENGAGE_ATTACHMENT_STORE"] == "database":
        with app.app_context():
            return db.session.scalar(sa.select(sa.func.count(sa.distinct(StoredChunk.store_key))))
    folder = app.config["ENGAGE_ATTACHMENT_DIR"]
    return sum(1 for p in Path(folder).rglob("*") if p.is_file())


def act(client, email_id, attachment_id, what, **fields):
    """Press Remove, Follow or Don't follow on one file, posting the whole compose form."""
    url = f"{PREFIX}/emails/{email_id}/attachments/{attachment_id}/{what}"
    return client.post(url, data=compose_form(client, **fields))


def send(client, email_id, **fields):
    url = f"{PREFIX}/emails/{email_id}/edit"
    return client.post(url, data=compose_form(client, action="send", **fields))


def copies(sink) -> dict[str, EmailMessage]:
    return {
        r.rcpt_tos[0]: message_from_bytes(r.data, policy=email_policy.default)
        for r in sink.messages
    }


def parts(message: EmailMessage) -> dict[str, bytes]:
    return {p.get_filename(): p.get_payload(decode=True) for p in message.iter_attachments()}


# -- the rules, without Flask ---------------------------------------------------------------------


def test_file_names_lose_folders_control_characters_and_excess_length():
    assert clean_filename("C:\\Users\\sam\\Desktop\\Q3 report.pdf") == "Q3 report.pdf"
    assert clean_filename("../../etc/passwd") == "passwd"
    # A right-to-left override would show "fdp.exe" as "exe.pdf".
    assert clean_filename("invoice\u202efdp.exe") == "invoicefdp.exe"
    assert clean_filename("a\r\nBcc: x@example.com.txt") == "aBcc: x@example.com.txt"
    assert clean_filename("   ") == clean_filename("..") == "attachment"
    long = clean_filename("x" * 300 + ".docx")
    assert long.endswith(".docx") and len(long.encode()) <= 200


def test_the_content_type_is_guessed_from_the_name_when_the_browser_gives_none():
    assert content_type_for("offer.pdf", "application/octet-stream") == "application/pdf"
    assert content_type_for("notes.txt", "") == "text/plain"
    assert content_type_for("data.unknownext", None) == "application/octet-stream"
    assert content_type_for("x.pdf", "image/png; charset=binary") == "image/png"
    assert content_type_for("x.pdf", "not a type\r\n") == "application/pdf"


def test_sizes_read_as_people_write_them(app):
    with app.test_request_context():
        assert format_size(512) == "512 bytes"
        assert format_size(1536) == "1.5 KB"
        assert format_size(20 * 1024 * 1024) == "20 MB"


# -- attaching -------------------------------------------------------------------------------------


def test_attaching_to_a_new_email_saves_the_draft_with_everything_typed(files_app):
    client = sign_in(files_app.test_client(), 1)
    response = client.post(
        f"{PREFIX}/compose/attachments",
        data={
            **compose_form(client, cc="grace@example.com", subject="Lumière offer"),
            "attachment": a_file("offer.pdf", PDF, "application/octet-stream"),
        },
    )
    assert response.status_code == 302
    email_id = int(re.search(r"/emails/(\d+)/edit", response.headers["Location"]).group(1))
    email = email_row(files_app, email_id)
    assert email.status is EmailStatus.DRAFT and email.subject == "Lumière offer"
    assert email.text_body == "Hello Ada,\n\nthe offer is attached."
    assert [p.address for p in email.recipients] == ["ada@example.com", "grace@example.com"]
    (attachment,) = attachments_of(files_app, email_id)
    assert attachment.filename == "offer.pdf" and attachment.content_type == "application/pdf"
    assert attachment.size == len(PDF) and attachment.sha256 == hashlib.sha256(PDF).hexdigest()
    assert not attachment.followed
    assert stored(files_app, attachment.storage_key) == PDF
    assert attachment.storage_key not in attachment.filename  # the name is never the path
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Attached “offer.pdf”. The draft was saved." in page
    assert "offer.pdf" in page and "2 KB" in page and "Not followed" in page
    assert 'enctype="multipart/form-data"' in page


def test_with_htmx_attaching_swaps_in_the_saved_draft_and_refreshes_the_timeline(files_app):
    client = sign_in(files_app.test_client(), 1)
    response = client.post(
        f"{PREFIX}/compose/attachments",
        data={**compose_form(client), "attachment": a_file()},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "engage-timeline-changed"
    body = response.get_data(as_text=True)
    assert "<html" not in body and re.search(r'hx-post="/crm/engage/emails/\d+/edit"', body)
    assert "Hello Ada," in body and "offer.pdf" in body


def test_save_and_send_take_a_chosen_file_along(files_app, smtp_sink, redis_client):
    client = sign_in(files_app.test_client(), 1)
    response = client.post(
        f"{PREFIX}/compose",
        data={**compose_form(client, action="save"), "attachment": a_file("notes.txt", b"hi")},
    )
    assert response.status_code == 302
    with files_app.app_context():
        email_id = db.session.query(Email.id).scalar()
    assert [a.filename for a in attachments_of(files_app, email_id)] == ["notes.txt"]
    response = client.post(
        f"{PREFIX}/emails/{email_id}/edit",
        data={**compose_form(client, action="send"), "attachment": a_file("more.txt", b"more")},
    )
    assert response.status_code == 302
    assert [a.filename for a in attachments_of(files_app, email_id)] == ["notes.txt", "more.txt"]


def test_a_file_over_the_limit_is_refused_with_the_limit_and_the_file_named(files_app):
    files_app.config["ENGAGE_MAX_ATTACHMENT_MB"] = 1
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file("small.txt", b"small"))
    big = b"x" * (1024 * 1024 + 1)
    response = client.post(
        f"{PREFIX}/emails/{email_id}/attachments",
        data={
            **compose_form(client, subject="Typed but not saved"),
            "attachment": a_file("big.bin", big),
        },
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "“big.bin” is larger than the 1 MB limit for attachments" in page
    assert 'value="Typed but not saved"' in page  # the form comes back as typed
    assert [a.filename for a in attachments_of(files_app, email_id)] == ["small.txt"]
    assert stored_count(files_app) == 1  # the partial copy of big.bin is gone
    assert email_row(files_app, email_id).subject == "Our offer"

    # On a new email nothing is saved, and everything typed comes back.
    response = client.post(
        f"{PREFIX}/compose/attachments",
        data={**compose_form(client, subject="Brand new"), "attachment": a_file("big.bin", big)},
    )
    assert response.status_code == 422 and "1 MB limit" in response.get_data(as_text=True)
    assert 'value="Brand new"' in response.get_data(as_text=True)
    with files_app.app_context():
        assert db.session.query(Email).count() == 1


def test_the_size_is_measured_while_the_file_streams_into_the_store(files_app):
    class CountingStore:
        """The app's store, counting the bytes it reads from what it saves."""

        received = 0

        def __init__(self, inner):
            self.inner = inner

        def save(self, stream, *, filename):
            class Counting:
                def read(inner, size=-1):  # noqa: N805
                    chunk = stream.read(size)
                    CountingStore.received += len(chunk)
                    return chunk

            return self.inner.save(Counting(), filename=filename)

        def open(self, key):
            return self.inner.open(key)

        def delete(self, key):
            self.inner.delete(key)

    state = files_app.extensions["engage"]
    state.store = CountingStore(state.store)
    files_app.config["ENGAGE_MAX_ATTACHMENT_MB"] = 1
    client = sign_in(files_app.test_client(), 1)
    response = client.post(
        f"{PREFIX}/compose/attachments",
        data={**compose_form(client), "attachment": a_file("big.bin", b"x" * (1536 * 1024))},
    )
    assert response.status_code == 422
    # The copy stopped at the limit: the store never saw the rest of the file.
    assert 1024 * 1024 <= CountingStore.received <= 1024 * 1024 + 64 * 1024
    assert stored_count(files_app) == 0


def test_a_runaway_upload_is_stopped_with_the_limit_named_and_nothing_saved(files_app):
    files_app.config["ENGAGE_MAX_ATTACHMENT_MB"] = 1
    client = sign_in(files_app.test_client(), 1)
    response = client.post(
        f"{PREFIX}/compose/attachments",
        data={**compose_form(client), "attachment": a_file("huge.bin", b"x" * (6 * 1024 * 1024))},
    )
    assert response.status_code == 413
    assert "1 MB limit" in response.get_data(as_text=True)
    assert stored_count(files_app) == 0
    with files_app.app_context():
        assert db.session.query(Email).count() == 0


def test_an_empty_file_or_no_file_is_refused_clearly(files_app):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file())
    empty = client.post(
        f"{PREFIX}/emails/{email_id}/attachments",
        data={**compose_form(client), "attachment": a_file("empty.txt", b"")},
    )
    assert empty.status_code == 422
    assert "“empty.txt” is empty" in empty.get_data(as_text=True)
    none = client.post(f"{PREFIX}/emails/{email_id}/attachments", data=compose_form(client))
    assert none.status_code == 422
    assert "Choose a file to attach first." in none.get_data(as_text=True)
    new = client.post(f"{PREFIX}/compose/attachments", data=compose_form(client))
    assert new.status_code == 422 and "Choose a file to attach first." in new.get_data(True)
    assert len(attachments_of(files_app, email_id)) == 1 and stored_count(files_app) == 1


def test_an_invalid_form_attaches_nothing_and_asks_for_the_file_again(files_app):
    client = sign_in(files_app.test_client(), 1)
    response = client.post(
        f"{PREFIX}/compose/attachments",
        data={**compose_form(client, cc="not an address"), "attachment": a_file()},
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Not a valid email address: not an address" in page
    assert "choose it again" in page
    with files_app.app_context():
        assert db.session.query(Email).count() == 0


def test_remove_deletes_the_bytes_and_keeps_the_typed_text(files_app):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file("a.pdf"), a_file("b.txt", b"bee", "text/plain"))
    first, second = attachments_of(files_app, email_id)
    response = act(client, email_id, first.id, "remove", subject="Still typing")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Removed “a.pdf”." in page and 'value="Still typing"' in page
    assert [a.filename for a in attachments_of(files_app, email_id)] == ["b.txt"]
    assert stored(files_app, first.storage_key) is None
    assert stored(files_app, second.storage_key) == b"bee"
    # Deleting the draft deletes the rest.
    client.post(f"{PREFIX}/emails/{email_id}/delete", data={"csrf_token": csrf_token(client)})
    assert stored_count(files_app) == 0


def test_another_rep_cannot_touch_the_files_and_a_manager_only_reads_them(files_app):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file())
    (attachment,) = attachments_of(files_app, email_id)
    rita = sign_in(files_app.test_client(), 2)
    mia = sign_in(files_app.test_client(), 3)  # Sam's sales manager
    for other in (rita, mia):
        base = f"{PREFIX}/emails/{email_id}/attachments"
        data = {**compose_form(other), "attachment": a_file("x.txt", b"x")}
        assert other.post(base, data=data).status_code == 404
        for what in ("remove", "follow", "unfollow"):
            assert act(other, email_id, attachment.id, what).status_code == 404
    assert rita.get(f"{PREFIX}/emails/{email_id}/attachments/{attachment.id}").status_code == 404
    download = mia.get(f"{PREFIX}/emails/{email_id}/attachments/{attachment.id}")
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert attachments_of(files_app, email_id)[0].filename == "offer.pdf"


def test_nothing_changes_after_send(files_app, redis_client):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file())
    (attachment,) = attachments_of(files_app, email_id)
    assert send(client, email_id).status_code == 302
    response = client.post(
        f"{PREFIX}/emails/{email_id}/attachments",
        data={**compose_form(client), "attachment": a_file("late.txt", b"late")},
    )
    assert response.status_code == 409
    assert "can no longer change" in response.get_data(as_text=True)
    for what in ("remove", "follow", "unfollow"):
        assert act(client, email_id, attachment.id, what).status_code == 409
    assert [(a.filename, a.followed) for a in attachments_of(files_app, email_id)] == [
        ("offer.pdf", False)
    ]


# -- following files -------------------------------------------------------------------------------


def test_a_file_can_be_followed_only_while_the_email_is_followed(files_app):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file())
    (attachment,) = attachments_of(files_app, email_id)

    followed = act(client, email_id, attachment.id, "follow")
    assert followed.status_code == 200 and "“offer.pdf” will be followed" in followed.get_data(True)
    assert attachments_of(files_app, email_id)[0].followed

    # Follow: Off. The file cannot be followed; the one already followed is shown going out
    # as a normal attachment.
    act(client, email_id, attachment.id, "unfollow")
    off = act(client, email_id, attachment.id, "follow", follow="0")
    assert off.status_code == 422
    assert "This email is not followed, so its attachments cannot be followed" in off.get_data(True)
    assert not attachments_of(files_app, email_id)[0].followed
    act(client, email_id, attachment.id, "follow")
    page = client.post(
        f"{PREFIX}/emails/{email_id}/edit", data=compose_form(client, action="unfollow")
    ).get_data(as_text=True)
    assert "Will be sent as a normal attachment: this email is not followed." in page

    # Blocked: Grace does not allow following.
    with files_app.app_context():
        db.session.get(Customer, 2).tracking_ok = False
        db.session.commit()
    act(client, email_id, attachment.id, "unfollow")
    blocked = act(client, email_id, attachment.id, "follow", cc="grace@example.com")
    assert blocked.status_code == 422
    assert "Following is blocked because a recipient does not allow it" in blocked.get_data(True)

    # Disabled: the organisation has no public address for tracking links.
    files_app.config["ENGAGE_PUBLIC_URL"] = None
    disabled = act(client, email_id, attachment.id, "follow")
    assert disabled.status_code == 422 and "ENGAGE_PUBLIC_URL" in disabled.get_data(True)
    assert not attachments_of(files_app, email_id)[0].followed


# -- on the wire -----------------------------------------------------------------------------------


def test_an_unfollowed_file_arrives_as_a_mime_part_with_its_name_and_bytes(
    files_app, smtp_sink, redis_client
):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(
        client,
        a_file("Q3 offer – Lumière.pdf"),
        a_file("notes.txt", "Grüße\n".encode(), "text/plain"),
        cc="grace@example.com",
        follow="0",
    )
    send(client, email_id, cc="grace@example.com", follow="0")
    assert run_delivery(files_app, email_id) == "sent"
    received = copies(smtp_sink)
    assert sorted(received) == ["ada@example.com", "grace@example.com"]
    for message in received.values():
        assert message.get_content_type() == "multipart/mixed"
        assert message.get_payload()[0].get_content_type() == "multipart/alternative"
        assert "the offer is attached" in message.get_body(("plain",)).get_content()
        assert parts(message) == {"Q3 offer – Lumière.pdf": PDF, "notes.txt": "Grüße\n".encode()}
        pdf = next(message.iter_attachments())
        assert pdf.get_content_type() == "application/pdf"
        assert pdf.get_content_disposition() == "attachment"
        assert "/t/a/" not in message.as_string()


def test_a_followed_file_arrives_as_a_tracked_link_per_recipient_and_not_as_a_part(
    files_app, smtp_sink, redis_client
):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(
        client,
        a_file("offer.pdf"),
        a_file("terms.txt", b"terms", "text/plain"),
        cc="grace@example.com",
    )
    offer, terms = attachments_of(files_app, email_id)
    act(client, email_id, offer.id, "follow", cc="grace@example.com")
    send(client, email_id, cc="grace@example.com")
    assert run_delivery(files_app, email_id) == "sent"
    email = email_row(files_app, email_id)
    assert email.followed
    tokens = {p.address: p.token for p in email.recipients}
    for address, message in copies(smtp_sink).items():
        link = f"{PUBLIC}/crm/engage/t/a/{tokens[address]}/{offer.id}"
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert f'<a href="{link}">offer.pdf</a>' in html
        assert f"- offer.pdf (2 KB): {link}" in text
        assert parts(message) == {"terms.txt": b"terms"}  # the unfollowed one is a part
        other = next(t for a, t in tokens.items() if a != address)
        assert other not in html and other not in text


def test_the_link_hands_out_the_file_and_the_worker_records_an_open_for_that_recipient_only(
    files_app, smtp_sink, redis_client
):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file("offer.pdf"), cc="grace@example.com")
    (offer,) = attachments_of(files_app, email_id)
    act(client, email_id, offer.id, "follow", cc="grace@example.com")
    send(client, email_id, cc="grace@example.com")
    run_delivery(files_app, email_id)
    with files_app.app_context():  # opened a while after delivery, as a person would
        for party in db.session.get(Email, email_id).recipients:
            party.delivered_at = utcnow() - timedelta(minutes=5)
        db.session.commit()
    ada = next(p for p in email_row(files_app, email_id).recipients if p.address.startswith("ada"))

    response = files_app.test_client().get(
        f"{PREFIX}/t/a/{ada.token}/{offer.id}", headers={"User-Agent": CHROME}
    )
    assert response.status_code == 200 and response.data == PDF
    assert response.headers["Content-Disposition"] == "attachment; filename=offer.pdf"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (
        response.mimetype == "application/pdf" and "no-store" in response.headers["Cache-Control"]
    )
    with files_app.app_context():
        assert db.session.query(TrackingEvent).count() == 0  # nothing written on the request
    assert redis_client.llen(QUEUE_KEY) == 1

    assert drain(files_app) == 1
    with files_app.app_context():
        (event,) = db.session.query(TrackingEvent).all()
        assert event.kind is EventKind.ATTACHMENT_OPEN and event.attachment_id == offer.id
        assert event.party_id == ada.id and not event.machine
    opens = {p.address: p.attachment_opens for p in email_row(files_app, email_id).recipients}
    assert opens == {"ada@example.com": 1, "grace@example.com": 0}
    page = client.get(f"{PREFIX}/emails/{email_id}/interactions").get_data(as_text=True)
    assert "opened an attachment" in page and "offer.pdf ×1" in page


def test_a_forged_token_or_a_file_of_another_email_is_not_found(files_app, smtp_sink, redis_client):
    client = sign_in(files_app.test_client(), 1)
    first = draft_with(client, a_file("first.pdf"), a_file("plain.txt", b"p", "text/plain"))
    second = draft_with(client, a_file("second.pdf"), subject="Another")
    mine, unfollowed = attachments_of(files_app, first)
    (theirs,) = attachments_of(files_app, second)
    act(client, first, mine.id, "follow")
    act(client, second, theirs.id, "follow", subject="Another")
    send(client, first)
    send(client, second, subject="Another")
    token = email_row(files_app, first).recipients[0].token
    with files_app.test_request_context():
        forged = new_token()  # well signed, but nobody's
    reader = files_app.test_client()
    assert reader.get(f"{PREFIX}/t/a/{token}/{mine.id}").status_code == 200
    assert reader.get(f"{PREFIX}/t/a/{token}/{theirs.id}").status_code == 404
    assert reader.get(f"{PREFIX}/t/a/{token}/{unfollowed.id}").status_code == 404
    assert reader.get(f"{PREFIX}/t/a/{forged}/{mine.id}").status_code == 404
    assert reader.get(f"{PREFIX}/t/a/not-a-token/{mine.id}").status_code == 404
    assert redis_client.llen(QUEUE_KEY) == 1  # only the genuine download was noted


def test_send_turns_followed_files_into_normal_ones_when_the_email_is_not_followed(
    files_app, smtp_sink, redis_client
):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file("offer.pdf"), cc="grace@example.com")
    (offer,) = attachments_of(files_app, email_id)
    act(client, email_id, offer.id, "follow", cc="grace@example.com")
    # Grace stops allowing following before Send is pressed: the email goes out unfollowed.
    with files_app.app_context():
        db.session.get(Customer, 2).tracking_ok = False
        db.session.commit()
    send(client, email_id, cc="grace@example.com")
    run_delivery(files_app, email_id)
    assert not email_row(files_app, email_id).followed
    assert not attachments_of(files_app, email_id)[0].followed
    for message in copies(smtp_sink).values():
        assert parts(message) == {"offer.pdf": PDF}
        assert "/t/a/" not in message.as_string()


def test_a_file_of_several_megabytes_comes_back_whole_from_the_download_and_on_the_wire(
    files_app, smtp_sink, redis_client
):
    big = hashlib.sha256(b"seed").digest() * (80 * 1024 + 7)  # 2.5 MB: three rows in a database
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file("scan.pdf", big), follow="0")
    (scan,) = attachments_of(files_app, email_id)
    assert scan.size == len(big)
    download = client.get(f"{PREFIX}/emails/{email_id}/attachments/{scan.id}")
    assert download.status_code == 200 and download.headers["Content-Length"] == str(len(big))
    assert hashlib.sha256(download.data).digest() == hashlib.sha256(big).digest()
    send(client, email_id, follow="0")
    assert run_delivery(files_app, email_id) == "sent"
    (message,) = copies(smtp_sink).values()
    assert parts(message) == {"scan.pdf": big}


def test_a_worker_on_another_machine_finds_the_files_only_in_the_database_store(
    files_app, tmp_path, database_url, redis_url, redis_client, smtp_sink
):
    """The web app and the worker have a folder each, as they would on two machines."""
    kind = files_app.config["ENGAGE_ATTACHMENT_STORE"]
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file("offer.pdf"), follow="0")
    assert send(client, email_id, follow="0").status_code == 302
    done = subprocess.run(
        rq_worker(redis_url, "--burst"),
        cwd=ROOT,
        env=worker_env(
            database_url,
            redis_url,
            ENGAGE_ATTACHMENT_STORE=kind,
            ENGAGE_ATTACHMENT_DIR=str(tmp_path / "the-worker-machine"),
            ENGAGE_SMTP_URL=smtp_sink.url,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (ada,) = email_row(files_app, email_id).recipients
    if kind == "database":
        assert ada.delivery_state is DeliveryState.SENT
        (message,) = copies(smtp_sink).values()
        assert parts(message) == {"offer.pdf": PDF}
    else:
        # The worker's folder has no such file: the copy cannot be built, and says why.
        assert ada.delivery_state is DeliveryState.FAILED
        assert read(ada.delivery_error) == (
            "The attachment offer.pdf is missing from the attachment store."
        )
        assert smtp_sink.messages == []
