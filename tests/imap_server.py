"""A real IMAP server for the reply tests: Debian's Dovecot, run in the foreground.

:func:`start_dovecot` writes a configuration that keeps everything (sockets, state, logs,
Maildir storage) in one temporary folder, listens on 127.0.0.1 and a free port without TLS,
and knows one user with a known password. It never touches the system's Dovecot service or
its files. Install the server with ``apt-get install dovecot-imapd`` (``./run tests`` does).

Run as root, Dovecot still insists on unprivileged users for its login processes and for mail
access, so it uses the ``dovenull`` and ``dovecot`` users the Debian package creates and the
``nobody`` user for mail; run as anyone else, every process runs as that user.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

USER = "replies"
PASSWORD = "s3cret pass@word"  # with a space and an @, so URLs must percent-encode it


def dovecot_binary() -> str:
    """The ``dovecot`` program: ``ENGAGE_DOVECOT``, else on the PATH, else Debian's path."""
    found = (
        os.environ.get("ENGAGE_DOVECOT")
        or shutil.which("dovecot")
        or shutil.which("dovecot", path="/usr/sbin")
    )
    if not found:
        raise RuntimeError(
            "The reply tests need Dovecot's IMAP server: apt-get install dovecot-imapd "
            "(or point ENGAGE_DOVECOT at a dovecot binary)."
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ImapServer:
    """A running Dovecot with one mailbox user."""

    host: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    user: str = USER
    password: str = PASSWORD
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The ``ENGAGE_IMAP_URL`` of the user's INBOX, credentials percent-encoded."""
        from urllib.parse import quote

        return f"imap://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/INBOX"

    def connect(self) -> imaplib.IMAP4:
        """A client, logged in as the user."""
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        """Deliver a message into ``mailbox`` with IMAP APPEND, unseen."""
        client = self.connect()
        try:
            status, data = client.append(mailbox, None, None, raw)
            assert status == "OK", data
        finally:
            client.logout()

    def flags(self, mailbox: str = "INBOX") -> list[set[str]]:
        """The flags of every message in ``mailbox``, in order."""
        client = self.connect()
        try:
            _status, count = client.select(mailbox, readonly=True)
            if not int(count[0] or 0):
                return []
            status, data = client.uid("FETCH", "1:*", "(FLAGS)")
            assert status == "OK", data
            found = []
            for item in data:
                if isinstance(item, bytes) and b"FLAGS" in item:
                    inside = item.split(b"FLAGS (", 1)[1].split(b")", 1)[0]
                    found.append({f.decode() for f in inside.split()})
            return found
        finally:
            client.logout()

    def empty(self, mailbox: str = "INBOX") -> None:
        """Delete every message in ``mailbox``."""
        client = self.connect()
        try:
            _status, data = client.select(mailbox)
            if int(data[0] or 0):  # "1:*" is no valid set in an empty mailbox
                client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                client.expunge()
        finally:
            client.logout()

    def log(self) -> str:
        """What Dovecot logged so far."""
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop Dovecot and remove its folder."""
        if self._stopped:
            return
        self._stopped = True
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _accounts() -> dict[str, str]:
    """Who Dovecot's processes run as (see the module docstring)."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(os.getegid()).gr_name
        return {
            "login": me.pw_name,
            "internal": me.pw_name,
            "internal_group": group,
            "mail_user": me.pw_name,
            "mail_group": group,
        }
    nobody = pwd.getpwnam("nobody")
    return {
        "login": "dovenull",
        "internal": "dovecot",
        "internal_group": "dovecot",
        "mail_user": "nobody",
        "mail_group": grp.getgrgid(nobody.pw_gid).gr_name,
    }


def _config(folder: Path, port: int) -> str:
    who = _accounts()
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {who["login"]}
default_internal_user = {who["internal"]}
default_internal_group = {who["internal_group"]}
mail_uid = {who["mail_user"]}
mail_gid = {who["mail_group"]}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{folder}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/users
}}
userdb {{
  driver = static
  args = uid={who["mail_user"]} gid={who["mail_group"]} home={folder}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            conn.settimeout(2)
            return conn.recv(64).startswith(b"* OK")
    except OSError:
        return False


def start_dovecot(timeout: float = 20) -> ImapServer:
    """Start Dovecot in the foreground on a free port; call ``stop()`` on what it returns.

    :raises RuntimeError: when it cannot start, with its log.
    """
    binary = dovecot_binary()
    last_log = ""
    for _attempt in range(3):  # another process may take the free port before Dovecot does
        # Not pytest's tmp_path: that is private to its owner, and Dovecot's unprivileged
        # processes must reach their sockets and the Maildir.
        folder = Path(tempfile.mkdtemp(prefix="engage-dovecot-"))
        folder.chmod(0o755)
        (folder / "mail").mkdir()
        who = _accounts()
        shutil.chown(folder / "mail", who["mail_user"], who["mail_group"])
        (folder / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        port = _free_port()
        (folder / "dovecot.conf").write_text(_config(folder, port))
        process = subprocess.Popen(
            [binary, "-F", "-c", str(folder / "dovecot.conf")],
            stdout=(folder / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = ImapServer("127.0.0.1", port, folder, process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(server.host, port):
                return server
            time.sleep(0.1)
        last_log = server.log() + (folder / "stdout.log").read_text(errors="replace")
        server.stop()
    raise RuntimeError(f"Dovecot did not start:\n{last_log}")
