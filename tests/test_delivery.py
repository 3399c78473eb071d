"""Delivery over the SMTP wire, against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import subprocess
from email import message_from_bytes, policy
from email.message import Message

import pytest
from rq.registry import ScheduledJobRegistry

from engage import current_engage
from engage.delivery import SmtpSettings, build_message, deliver
from engage.i18n import read
from engage.models import DeliveryState, EmailStatus
from tests.support import (
    ROOT,
    Received,
    SmtpSink,
    csrf_in,
    csrf_token,
    free_port,
    load,
    rq_worker,
    run_delivery,
    send,
    sign_in,
    worker_env,
)


@pytest.fixture
def smtp_app(app, smtp_sink):
    app.config["ENGAGE_SMTP_URL"] = smtp_sink.url
    app.config["ENGAGE_SMTP_RETRY_DELAYS"] = (1, 1)
    app.config["ENGAGE_SMTP_TIMEOUT"] = 5
    return app


def test_each_recipient_gets_one_copy_with_to_and_cc_as_written_and_no_bcc(
    smtp_app, smtp_sink, redis_client
):
    email_id = send(smtp_app)
    assert run_delivery(smtp_app, email_id) == "sent"
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == [
        "ada@example.com",
        "bcc@example.com",
        "grace@example.com",
    ]
    assert all(len(m.rcpt_tos) == 1 for m in smtp_sink.messages)
    ids = set()
    for received in smtp_sink.messages:
        message: Message = received.message
        assert received.mail_from == "sam@host.test"
        assert message["From"] == "Sam Seller <sam@host.test>"
        assert message["To"] == "Ada Lovelace <ada@example.com>"
        assert message["Cc"] == "grace@example.com"
        assert message["Bcc"] is None
        assert b"bcc@example.com" not in received.data  # not even in the Bcc'd copy's headers
        assert message["Subject"] == "Quarterly review"
        assert message["Date"]
        ids.add(message["Message-ID"])
        assert message.get_content_type() == "multipart/alternative"
        text, html = message.get_payload()
        assert text.get_content_type() == "text/plain"
        assert (
            "Hello Ada, see Q3 (https://example.com/q3)" in text.get_payload(decode=True).decode()
        )
        assert html.get_content_type() == "text/html"
        assert 'href="https://example.com/q3"' in html.get_payload(decode=True).decode()
    assert len(ids) == 1 and ids == {load(smtp_app, email_id).message_id}
    email = load(smtp_app, email_id)
    assert email.status is EmailStatus.SENT and email.sent_at is not None
    assert all(p.delivery_state is DeliveryState.SENT for p in email.recipients)


#: Bodies that take each of the encodings a text part can get.
BODIES = {
    "German, short lines (8bit)": '<div>Grüße, see <a href="https://example.com/q3">Q3</a></div>',
    "ASCII, short lines (7bit)": '<div>Hello, see <a href="https://example.com/q3">Q3</a></div>',
    "long lines (quoted-printable)": "<div>"
    + "Eine sehr lange Zeile ohne Umbruch, dafür mit Umlauten: äöü. " * 30
    + '<a href="https://example.com/q3">Q3</a></div>',
    "long lines of Japanese (base64)": "<div>" + "見積もりを添付いたします。" * 60 + "</div>",
    "dots, spaces and a boundary's look": "<div>. a line that starts with a dot</div>"
    "<div>--=_engage_0 and ==== and =3D</div><pre>indented   \n.\n..</pre>",
}


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("follow", [True, False])
def test_each_copy_on_the_wire_is_the_message_build_message_makes_for_its_recipient(
    smtp_app, smtp_sink, redis_client, follow, body
):
    # The worker flattens the shared headers once and writes each recipient's body itself
    # (engage.mime): the result must be the very message build_message describes with the email
    # package, header for header, part for part (only the MIME boundaries are drawn anew, and
    # encoded text may use the CRLF line breaks of the wire).
    email_id = send(
        smtp_app,
        to="Jürgen Müller <ada@example.com>",
        subject="Angebot für Q3 – Übersicht",
        html=BODIES[body],
        follow=follow,
    )
    assert run_delivery(smtp_app, email_id) == "sent"
    with smtp_app.app_context():
        email = current_engage.session.get(type(load(smtp_app, email_id)), email_id)
        expected = {
            p.address: message_from_bytes(
                build_message(email, p).as_bytes(policy=policy.SMTP), policy=policy.SMTP
            )
            for p in email.recipients
        }

    def shape(message: Message) -> list:
        headers = [
            (k, str(v))
            for k, v in message.items()
            if k not in ("Content-Type", "Content-Transfer-Encoding")
        ]
        parts = [
            (
                part.get_content_type(),
                part.get_content_charset(),
                part["Content-Transfer-Encoding"],
                part.get_payload(decode=True).replace(b"\r\n", b"\n"),
            )
            for part in message.walk()
            if not part.is_multipart()
        ]
        return [message.get_content_type(), headers, parts]

    assert len(smtp_sink.messages) == 3
    for received in smtp_sink.messages:
        (address,) = received.rcpt_tos
        got = message_from_bytes(received.data, policy=policy.SMTP)
        assert shape(got) == shape(expected[address])
        assert [part.defects for part in got.walk()] == [[] for _part in got.walk()]
        # No line on the wire is longer than SMTP allows, and text kept as it is stays short.
        assert max(len(line) for line in received.data.splitlines()) <= 998
        for part in got.walk():
            if part["Content-Transfer-Encoding"] in ("7bit", "8bit"):
                lines = part.get_payload(decode=True).splitlines()
                assert max(len(line) for line in lines) <= 78


def test_a_retried_or_duplicated_job_never_sends_a_copy_twice(smtp_app, smtp_sink, redis_client):
    email_id = send(smtp_app)
    run_delivery(smtp_app, email_id)
    assert run_delivery(smtp_app, email_id) == "nothing to do"
    with smtp_app.app_context():
        current_engage.queue.enqueue(deliver, email_id)
    assert len(smtp_sink.messages) == 3


def test_a_second_job_for_the_same_email_stands_back_while_one_runs(
    smtp_app, smtp_sink, redis_client
):
    email_id = send(smtp_app)
    with smtp_app.app_context():
        lock = current_engage.redis.lock(f"engage:deliver:{email_id}", timeout=60)
        assert lock.acquire(blocking=False)
        assert deliver(email_id) == "busy"
        lock.release()
    assert smtp_sink.messages == []


def test_a_5xx_recipient_fails_with_the_servers_words_while_the_others_get_theirs(
    app, start_smtp_sink, redis_client
):
    sink = start_smtp_sink(refuse={"grace@example.com": "550 5.1.1 No such user here"})
    app.config["ENGAGE_SMTP_URL"] = sink.url
    email_id = send(app)
    assert run_delivery(app, email_id) == "partly_failed"
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["ada@example.com", "bcc@example.com"]
    email = load(app, email_id)
    grace = next(p for p in email.recipients if p.address == "grace@example.com")
    assert grace.delivery_state is DeliveryState.FAILED
    assert read(grace.delivery_error) == "The mail server answered: 550 5.1.1 No such user here"
    client = sign_in(app.test_client(), 1)
    timeline = client.get("/crm/engage/timeline/customer/2").get_data(as_text=True)
    assert "Partly failed" in timeline and "550 5.1.1 No such user here" in timeline


def test_a_4xx_recipient_is_retried_later_and_delivered_then(app, start_smtp_sink, redis_client):
    port = free_port()
    sink = start_smtp_sink(
        port=port, refuse={"ada@example.com": "451 4.7.1 Greylisted, come back later"}
    )
    app.config.update(ENGAGE_SMTP_URL=sink.url, ENGAGE_SMTP_RETRY_DELAYS=(1, 1))
    email_id = send(app)
    assert run_delivery(app, email_id) == "retrying"
    ada = next(p for p in load(app, email_id).recipients if p.address == "ada@example.com")
    assert ada.delivery_state is DeliveryState.RETRYING
    assert "451 4.7.1 Greylisted" in read(ada.delivery_error)
    sink.stop()
    sink = start_smtp_sink(port=port)  # the relay lets it through now
    assert run_delivery(app, email_id) == "sent"
    assert [m.rcpt_tos for m in sink.messages] == [["ada@example.com"]]


def test_relay_down_shows_retrying_then_a_retry_succeeds(app, start_smtp_sink, redis_client):
    port = free_port()  # nothing listens there yet: connection refused
    app.config.update(ENGAGE_SMTP_URL=f"smtp://127.0.0.1:{port}", ENGAGE_SMTP_RETRY_DELAYS=(30, 30))
    email_id = send(app)
    assert run_delivery(app, email_id) == "retrying"
    email = load(app, email_id)
    assert email.delivery_summary == "retrying" and email.next_attempt_at is not None
    assert all("refused the connection" in read(p.delivery_error) for p in email.recipients)
    with app.app_context():
        assert len(ScheduledJobRegistry(queue=current_engage.queue)) == 1
    client = sign_in(app.test_client(), 1)
    assert "Retrying" in client.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "next attempt" in client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)

    sink = start_smtp_sink(port=port)
    assert run_delivery(app, email_id) == "sent"
    assert len(sink.messages) == 3


def test_relay_down_for_good_ends_failed_with_the_reason_and_resend_delivers(
    app, start_smtp_sink, redis_client
):
    port = free_port()
    app.config.update(ENGAGE_SMTP_URL=f"smtp://127.0.0.1:{port}", ENGAGE_SMTP_RETRY_DELAYS=(1, 1))
    email_id = send(app)
    assert [run_delivery(app, email_id) for _ in range(3)] == ["retrying", "retrying", "failed"]
    email = load(app, email_id)
    assert email.status is EmailStatus.FAILED
    assert all("Gave up after 3 attempts" in read(p.delivery_error) for p in email.recipients)
    client = sign_in(app.test_client(), 1)
    detail = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "Resend to the failed recipients" in detail
    assert email.subject == "Quarterly review" and "Hello" in email.html_body  # nothing lost

    sink = start_smtp_sink(port=port)
    token = csrf_in(detail)
    assert (
        client.post(f"/crm/engage/emails/{email_id}/resend", data={"csrf_token": token}).status_code
        == 302
    )
    assert run_delivery(app, email_id) == "sent"
    assert len(sink.messages) == 3


def test_the_worker_started_from_the_rq_cli_delivers_what_the_endpoint_queued(
    app, smtp_sink, database_url, redis_url, redis_client
):
    app.config["ENGAGE_SMTP_URL"] = smtp_sink.url
    client = sign_in(app.test_client(), 1)
    token = csrf_token(client)
    response = client.post(
        "/crm/engage/compose",
        data={
            "csrf_token": token,
            "action": "send",
            "regarding": "customer:1",
            "body_format": "text",
            "to": "ada@example.com",
            "cc": "grace@example.com",
            "subject": "Via the worker",
            "body": "Hello from the queue",
        },
    )
    assert response.status_code == 302
    done = subprocess.run(
        rq_worker(redis_url, "--burst", "--with-scheduler"),
        cwd=ROOT,
        env=worker_env(database_url, redis_url, ENGAGE_SMTP_URL=smtp_sink.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == [
        "ada@example.com",
        "grace@example.com",
    ], done.stdout + done.stderr
    for customer in (1, 2):
        timeline = client.get(f"/crm/engage/timeline/customer/{customer}").get_data(as_text=True)
        assert "Via the worker" in timeline and "Sent" in timeline


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, "plain", None, None)),
        (
            "smtp+starttls://u%40x:p%3Aw@mail.example.com",
            ("mail.example.com", 587, "starttls", "u@x", "p:w"),
        ),
        ("smtps://mail.example.com:2465", ("mail.example.com", 2465, "ssl", None, None)),
    ],
)
def test_smtp_urls_name_host_port_security_and_credentials(url, expected):
    s = SmtpSettings.from_url(url)
    assert (s.host, s.port, s.security, s.username, s.password) == expected


def test_an_unknown_smtp_scheme_is_refused_with_the_expected_forms():
    with pytest.raises(ValueError, match="smtp\\+starttls"):
        SmtpSettings.from_url("http://mail.example.com")


def test_after_a_redis_flush_the_sweep_sends_a_stranded_email_once(
    smtp_app, smtp_sink, redis_client
):
    from engage.jobs import sweep

    email_id = send(smtp_app)
    with smtp_app.app_context():
        sweep()
        # Its job waits in the queue (its queued mark says so): the sweep adds none.
        assert len(current_engage.queue) == 1
    redis_client.flushdb()  # the queued delivery job is gone, and its mark with it
    with smtp_app.app_context():
        assert len(current_engage.queue) == 0
        sweep()  # nothing holds the email and nothing waits for it: queued at once
        sweep()  # twice: its new job waits, so it is queued once
        jobs = current_engage.queue.get_jobs()
        assert [j.func_name for j in jobs] == ["engage.jobs.deliver"]
    for job in jobs * 2:  # run twice: still delivered once
        with smtp_app.app_context():
            job.perform()
    assert len(smtp_sink.messages) == 3
    assert load(smtp_app, email_id).status is EmailStatus.SENT


def deliver_failing(app, email_id, monkeypatch, name: str, error: BaseException) -> None:
    """Run the delivery job with ``engage.delivery.<name>`` raising ``error``, which the job
    must let through."""
    import engage.delivery

    def broken(*args, **kwargs):
        raise error

    with monkeypatch.context() as patch:
        patch.setattr(engage.delivery, name, broken)
        with app.app_context(), pytest.raises(type(error)):
            deliver(email_id)


def test_a_job_that_dies_before_its_commit_does_not_resend_what_the_relay_accepted(
    smtp_app, smtp_sink, redis_client, monkeypatch
):
    email_id = send(smtp_app)
    deliver_failing(smtp_app, email_id, monkeypatch, "_settle", SystemExit("the worker died"))
    assert len(smtp_sink.messages) == 3
    # Each answer was committed right after the relay's 250, in the database: a flushed Redis
    # loses nothing of it.
    assert all(p.delivery_state is DeliveryState.SENT for p in load(smtp_app, email_id).recipients)
    redis_client.flushdb()
    assert run_delivery(smtp_app, email_id) == "sent"  # the retried job
    assert len(smtp_sink.messages) == 3
    email = load(smtp_app, email_id)
    assert all(p.delivery_state is DeliveryState.SENT and p.delivered_at for p in email.recipients)


def test_a_job_that_fails_while_settling_still_stores_the_last_answer(
    smtp_app, smtp_sink, monkeypatch
):
    # The last copy's answer rides with the email's outcome; when settling fails half-way, the
    # job stores that answer on its own instead (and does not wait on its own row lock).
    email_id = send(smtp_app)
    broken = RuntimeError("the timeline is broken")
    deliver_failing(smtp_app, email_id, monkeypatch, "move_email_activities", broken)
    assert len(smtp_sink.messages) == 3
    email = load(smtp_app, email_id)
    assert email.status is EmailStatus.SENDING
    assert all(p.delivery_state is DeliveryState.SENT for p in email.recipients)
    assert all(p.attempt_id is None for p in email.recipients)
    assert run_delivery(smtp_app, email_id) == "sent"
    assert len(smtp_sink.messages) == 3


def test_a_copy_reaches_data_only_once_its_claim_is_stored(app, redis_client):
    # On PostgreSQL the claim is stored while the relay reads the envelope; DATA, which hands
    # the copy over, must still wait for it. Another connection holds the first recipient's
    # row (SQLite: the whole file), so that copy's claim cannot land until it lets go.
    import threading
    import time

    import sqlalchemy as sa
    from aiosmtpd.controller import Controller

    from engage.models import Party
    from tests.hostapp import db

    events: list[tuple[str, str]] = []

    class Recorder:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            events.append(("RCPT", address))
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            events.append(("DATA", envelope.rcpt_tos[0]))
            return "250 OK"

    controller = Controller(Recorder(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        app.config["ENGAGE_SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}"
        email_id = send(app, follow=False)
        first = load(app, email_id).recipients[0].address
        with app.app_context():
            engine = db.engine
        with engine.connect() as holder:
            if engine.dialect.name == "postgresql":
                holder.execute(
                    sa.select(Party.id)
                    .where(Party.email_id == email_id, Party.address == first)
                    .with_for_update()
                )
            else:
                holder.exec_driver_sql("BEGIN IMMEDIATE")
            outcome: list[str] = []
            job = threading.Thread(target=lambda: outcome.append(run_delivery(app, email_id)))
            job.start()
            time.sleep(1.0)
            assert [kind for kind, _address in events if kind == "DATA"] == []
            holder.rollback()
        job.join(30)
        assert outcome == ["sent"]
        delivered = [address for kind, address in events if kind == "DATA"]
        assert sorted(delivered) == ["ada@example.com", "bcc@example.com", "grace@example.com"]
        assert delivered[0] == first
    finally:
        controller.stop()


def test_an_address_beyond_ascii_goes_out_with_smtputf8(app, redis_client):
    from aiosmtpd.controller import Controller

    sink = SmtpSink("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            sink.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
            )
            return "250 OK"

    controller = Controller(Handler(), hostname=sink.host, port=sink.port, enable_SMTPUTF8=True)
    controller.start()
    try:
        app.config["ENGAGE_SMTP_URL"] = sink.url
        email_id = send(app, to="Jürgen <jürgen@müller.example>", cc="", bcc="")
        assert run_delivery(app, email_id) == "sent"
        (received,) = sink.messages
        assert received.rcpt_tos == ["jürgen@müller.example"]
        assert "jürgen@müller.example" in received.data.decode("utf-8")
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login_reach_a_relay_that_demands_them(app, certificate, redis_client, security):
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = SmtpSink("127.0.0.1", free_port())
    logins = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            sink.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
            )
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"relay-user" and auth_data.password == b"s3cret:pw"
        logins.append((mechanism, ok, session.ssl is not None))
        return AuthResult(success=ok)

    # aiosmtpd only knows about TLS it negotiated itself (STARTTLS); on an implicit-TLS port
    # it must be told not to insist.
    options = {"authenticator": authenticator, "auth_require_tls": security == "starttls"}
    if security == "ssl":
        controller = Controller(
            Handler(), hostname=sink.host, port=sink.port, ssl_context=context, **options
        )
        scheme = "smtps"
    else:
        controller = Controller(
            Handler(),
            hostname=sink.host,
            port=sink.port,
            tls_context=context,
            require_starttls=True,
            **options,
        )
        scheme = "smtp+starttls"
    controller.start()
    try:
        app.config.update(
            ENGAGE_SMTP_URL=f"{scheme}://relay-user:s3cret%3Apw@127.0.0.1:{sink.port}",
            ENGAGE_SMTP_CA_FILE=str(cert),
            ENGAGE_SMTP_TIMEOUT=5,
        )
        email_id = send(app)
        outcome = run_delivery(app, email_id)
        assert outcome == "sent", load(app, email_id).recipients[0].delivery_error
        assert len(sink.messages) == 3
        assert logins and all(ok for _mech, ok, _encrypted in logins)
        if security == "starttls":
            assert all(encrypted for _mech, _ok, encrypted in logins)

    finally:
        controller.stop()
