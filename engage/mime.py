"""A copy's MIME body, flattened straight to bytes (DESIGN "Sending").

The body of every email engage sends has one shape: a text part, an HTML alternative when the
email has one, and attached files around them. :mod:`email.message` builds that shape through
its general header machinery (each header parsed and refolded, a class made per header),
which costs more than a millisecond per copy. Here the parts are written directly: their own
header lines are fixed ASCII, and their payloads are encoded with :mod:`binascii`. Attached
files, whose headers carry names from outside, are still flattened by :mod:`email`, once per
file (see :func:`file_part`).

Each text part is encoded as :mod:`email.contentmanager` would choose: ``7bit`` for ASCII in
short lines, ``8bit`` for other text in short lines (as the ``SMTP`` policies allow), and for
long lines quoted-printable, or base64 when that comes out shorter.
"""

from __future__ import annotations

import binascii
import secrets
from email.headerregistry import HeaderRegistry
from email.message import MIMEPart
from email.policy import Policy, default

#: The longest line a part may keep unencoded, as :data:`email.policy.SMTP` has it.
MAX_LINE = 78
#: Bytes per base64 line: 76 characters, as email clients write them.
_BASE64_CHUNK = MAX_LINE // 4 * 3


def text_part(text: str, subtype: str, linesep: bytes) -> bytes:
    """A ``text/<subtype>`` part in UTF-8: its header lines, an empty line, its payload."""
    lines = text.encode("utf-8").splitlines()
    if max((len(line) for line in lines), default=0) <= MAX_LINE:
        cte = "7bit" if all(line.isascii() for line in lines) else "8bit"
        payload = linesep.join(lines) + linesep
    else:
        # Long lines must be wrapped, by whichever encoding is shorter for this text.
        data = b"\n".join(lines) + b"\n"
        quoted = binascii.b2a_qp(data, istext=True)
        wrapped = _base64_lines(data.replace(b"\n", b"\r\n"), linesep)
        if len(wrapped) < len(quoted):
            cte, payload = "base64", wrapped
        else:
            cte, payload = "quoted-printable", quoted.replace(b"\n", linesep)
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {cte}",
    )
    return _lines(head, linesep) + linesep + linesep + payload


def file_part(data: bytes, content_type: str, filename: str, policy: Policy) -> bytes:
    """An attached file, as :meth:`EmailMessage.add_attachment` would write it.

    Its name comes from the rep's upload, so its header is left to :mod:`email`: quoted, or
    encoded by RFC 2231 unless ``policy`` allows UTF-8 headers.
    """
    maintype, _slash, subtype = content_type.partition("/")
    part = MIMEPart(policy=policy)
    part.set_content(
        data,
        maintype=maintype or "application",
        subtype=subtype or "octet-stream",
        filename=filename,
    )
    return part.as_bytes(policy=policy)


def multipart(subtype: str, parts: list[bytes], linesep: bytes) -> bytes:
    """A ``multipart/<subtype>`` part around ``parts`` (each as :func:`text_part` gives them)."""
    boundary = _boundary(parts)
    head = (f"Content-Type: multipart/{subtype};", f' boundary="{boundary}"')
    delimiter = b"--" + boundary.encode("ascii")
    # Every part ends with a line break of its own; the one before each later delimiter
    # belongs to that delimiter (RFC 2046), as the email package writes it.
    out = [_lines(head, linesep), linesep, linesep, delimiter, linesep, parts[0]]
    for part in parts[1:]:
        out += [linesep, delimiter, linesep, part]
    out += [linesep, delimiter, b"--", linesep]
    return b"".join(out)


def message_body(part: bytes, linesep: bytes) -> bytes:
    """The top part of a message: marked as MIME, to follow the message's other header lines."""
    return b"MIME-Version: 1.0" + linesep + part


def _boundary(parts: list[bytes]) -> str:
    # "=_" appears in neither quoted-printable nor base64 text, and the random part makes a
    # collision with 7bit or 8bit text practically impossible; it is still checked.
    while True:
        boundary = f"=_engage_{secrets.token_hex(12)}"
        if not any(boundary.encode("ascii") in part for part in parts):
            return boundary


def _base64_lines(data: bytes, linesep: bytes) -> bytes:
    return b"".join(
        binascii.b2a_base64(data[i : i + _BASE64_CHUNK], newline=False) + linesep
        for i in range(0, len(data), _BASE64_CHUNK)
    )


def _lines(lines: tuple[str, ...], linesep: bytes) -> bytes:
    return linesep.join(line.encode("ascii") for line in lines)


class _HeaderClasses(HeaderRegistry):
    """The email package's header registry, making each header's class once.

    The stock registry makes a new class every time a header is set, a good part of the cost of
    building a message's headers.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


#: The policy to build a message's headers with (its flattening policy is chosen apart).
BUILD_POLICY = default.clone(header_factory=_HeaderClasses())
