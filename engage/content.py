"""The rules of writing an email, as plain functions over plain values (SPEC S4–S6).

Reading address fields, checking a subject, cleaning and converting bodies: none of this needs
Flask, so it is tested on its own and the views stay thin.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from email.utils import getaddresses
from html.parser import HTMLParser

import nh3
from email_validator import EmailNotValidError, validate_email

from .records import RecordRef

#: Tags the body editor produces and an email may keep.
ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "i", "li",
    "ol", "p", "pre", "s", "span", "strong", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
ALLOWED_SCHEMES = {"http", "https", "mailto"}


@dataclass(frozen=True, slots=True)
class Address:
    """One recipient as written: the address, an optional display name, an optional record."""

    address: str
    name: str = ""
    record: RecordRef | None = None

    def __str__(self) -> str:
        return format_address(self.name, self.address)


@dataclass(frozen=True, slots=True)
class ParsedAddresses:
    """The result of reading an address field: what is valid, and what is not (as typed)."""

    valid: list[Address]
    invalid: list[str]


def header_problem(text: str) -> str | None:
    """Why ``text`` cannot go into a header as it is (``"line break"``, ``"control
    character"``), or ``None`` when it can.

    A line break would let the writer add headers of their own (header injection), and the MIME
    layer refuses every character Python reads as a line end: CR and LF, but also vertical tab,
    form feed, the file/group/record separators, NEL (U+0085) and the Unicode line and paragraph
    separators. Other control characters (NUL, …) and lone surrogates cannot be stored or sent
    reliably either. Tab is allowed.
    """
    if len(f"a{text}b".splitlines()) > 1:
        return "line break"
    for char in text:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Cs"):
            return "control character"
    return None


def header_safe(text: str) -> str:
    """``text`` fit for a header: each line break or control character becomes a space.

    For names that come from elsewhere (a host's records, its users): what a rep types is
    refused instead, with :func:`header_problem`.
    """
    if header_problem(text) is None:
        return text
    cleaned = "".join(
        " " if char != "\t" and unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") else char
        for char in text
    )
    return " ".join(cleaned.split())


def strip_controls(text: str) -> str:
    """``text`` without control characters (NUL, …) and lone surrogates; tab and line ends stay.

    A body may hold line breaks, but no database or mail server takes a NUL.
    """
    return "".join(
        char for char in text if char in "\t\n\r" or unicodedata.category(char) not in ("Cc", "Cs")
    )


def format_address(name: str, address: str) -> str:
    """``Name <address>``, the name quoted when it holds characters special in headers.

    Unlike :func:`email.utils.formataddr`, this keeps addresses beyond ASCII as they are (they
    are sent with SMTPUTF8).
    """
    if not name:
        return address
    if re.search(r'[()<>\[\]:;@\\,."]', name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def split_entries(text: str) -> list[str]:
    """The entries of an address field as typed, split on commas, semicolons and new lines."""
    return _split_entries(text)


def _split_entries(text: str) -> list[str]:
    # Split on commas and semicolons outside quotes and angle brackets, so that
    # '"Lovelace, Ada" <ada@example.com>' stays one entry.
    entries: list[str] = []
    current: list[str] = []
    quoted = angled = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        if char in ",;\n" and not quoted and not angled:
            entries.append("".join(current))
            current = []
        else:
            current.append(char)
    entries.append("".join(current))
    return [e.strip() for e in entries if e.strip()]


def parse_addresses(text: str) -> ParsedAddresses:
    """Read an address field such as ``Ada <ada@example.com>, bob@example.org``.

    Entries are separated by commas, semicolons or new lines. Each valid entry is normalised
    (the domain lower-cased, internationalised domains kept readable); duplicates are dropped.
    Invalid entries are returned as typed, so the form can show them again with an error.
    """
    valid: list[Address] = []
    invalid: list[str] = []
    seen: set[str] = set()
    for entry in _split_entries(text or ""):
        parsed = getaddresses([entry])
        name, address = parsed[0] if len(parsed) == 1 else ("", "")
        if not address or "\r" in entry or "\n" in entry or header_problem(entry):
            invalid.append(entry)
            continue
        try:
            checked = validate_email(address, check_deliverability=False)
        except EmailNotValidError:
            invalid.append(entry)
            continue
        normalised = checked.normalized
        if normalised.lower() in seen:
            continue
        seen.add(normalised.lower())
        valid.append(Address(normalised, name.strip()))
    return ParsedAddresses(valid, invalid)


def subject_error(subject: str) -> str | None:
    """Why ``subject`` cannot be used as a Subject header, or ``None`` when it can.

    A line break in a header would let the writer add headers of their own (header injection),
    so it is refused rather than silently removed; so is a control character (see
    :func:`header_problem`).
    """
    if problem := header_problem(subject):
        return problem
    if len(subject) > 900:
        return "too long"
    return None


def clean_html(body: str) -> str:
    """The body's HTML with everything but simple formatting and safe links removed."""
    return nh3.clean(
        strip_controls(body or ""),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer",
    ).strip()


def text_to_html(text: str) -> str:
    """Plain text (from the no-JavaScript textarea) as HTML paragraphs with line breaks."""
    paragraphs = re.split(r"\n\s*\n", (text or "").replace("\r\n", "\n").strip())
    return "".join(
        "<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs if p.strip()
    )


class _TextWriter(HTMLParser):
    """Turns body HTML into the text part: blocks on their own lines, links as ``text (url)``."""

    BLOCKS = {"p", "div", "h1", "h2", "h3", "blockquote", "pre", "ul", "ol"}
    PARAGRAPHS = {"p", "h1", "h2", "h3", "blockquote", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.links: list[str | None] = []
        self.lists: list[list[int]] = []

    def _newline(self) -> None:
        if self.out and not "".join(self.out[-2:]).endswith("\n"):
            self.out.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.out.append("\n")
        elif tag in self.BLOCKS:
            self._newline()
            if tag in self.PARAGRAPHS and self.out and not "".join(self.out).endswith("\n\n"):
                self.out.append("\n")  # a paragraph stands apart from what came before
            if tag in {"ul", "ol"}:
                self.lists.append([0] if tag == "ol" else [-1])
        elif tag == "li":
            self._newline()
            depth = max(len(self.lists) - 1, 0)
            counter = self.lists[-1] if self.lists else [-1]
            if counter[0] >= 0:
                counter[0] += 1
                self.out.append("  " * depth + f"{counter[0]}. ")
            else:
                self.out.append("  " * depth + "- ")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS or tag == "li":
            if tag in {"ul", "ol"} and self.lists:
                self.lists.pop()
            self._newline()
            if tag in self.PARAGRAPHS:
                self.out.append("\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith("mailto:"):
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def html_to_text(body: str) -> str:
    """The plain-text version of an HTML body, for the text part of the message."""
    writer = _TextWriter()
    writer.feed(body or "")
    writer.close()
    text = "".join(writer.out)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
