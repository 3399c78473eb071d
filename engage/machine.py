"""Telling machine tracking events from people (SPEC S14).

A followed message records an event whenever its pixel is fetched or one of its tracked links
(or followed attachments) is followed. Many of those requests are not a person reading: mail
privacy proxies fetch every image shortly after delivery, security gateways follow every link
before the recipient sees the message, chat apps unfurl links a person pasted, scripts probe
URLs. Such events are kept, labelled *machine* with a reason, and left out of opens, clicks,
cards and reminder conditions.

Where the knowledge is not about email, engage does not keep its own list: crawlers, bots,
link-preview fetchers of chat and social apps and the HTTP libraries of every common language
are recognised by CrawlerDetect (the ``crawlerdetect`` package, MIT licence, a Python port of
the regularly released JayBizzle/Crawler-Detect patterns, some 1,500 of them). engage's own
rules cover only what is specific to email: mail clients and image proxies that fetch for a
person (which a web crawler list calls bots), privacy-proxy prefetch (Apple Mail Privacy
Protection), security gateways named in the agent, opens and clicks too soon after delivery to
be read, clicks before any open while a gateway still scans, and bursts over every link.

:func:`classify` is a pure function over plain values: the event, what is already known about
the same recipient of the same message, and the thresholds. The rules live in one ordered
table, :data:`_RULES`; the first rule that matches decides. The module stores nothing, and
classifying needs neither an app nor the database; :func:`reason_text` turns a stored reason
code into words at reading time, in the reader's language (within an app context).

A reason is stored as a code: the reason's name, then its values, separated by ``|``
(``"bot|WhatsApp"``, ``"fast_open|3"``). Codes are stable; their wording lives in
:func:`reason_text` and the translation catalogue, so a rep reads the reason in their language
and a better wording reaches events stored long ago.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from crawlerdetect import CrawlerDetect

from .i18n import gettext as _
from .i18n import ngettext

OPEN = "open"
CLICK = "click"
ATTACHMENT_OPEN = "attachment_open"
KINDS = frozenset({OPEN, CLICK, ATTACHMENT_OPEN})

# Kinds that are a followed link rather than a fetched image: scanners follow these, image
# proxies do not.
_LINK_KINDS = frozenset({CLICK, ATTACHMENT_OPEN})

#: The reason of the clicks of a burst over every link of the message, and of the open the
#: same scanner made just before (see :func:`burst_opens`).
EVERY_LINK = "every_link"
BURST = "click_burst"
BURST_OPEN = "burst_open"


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the tracking endpoint saw of one request.

    :param kind: ``"open"`` (pixel fetched), ``"click"`` (tracked link followed) or
        ``"attachment_open"`` (followed attachment's link followed).
    :param method: the HTTP method, e.g. ``"GET"`` or ``"HEAD"``.
    :param user_agent: the ``User-Agent`` header; empty when the request had none.
    :param occurred_at: when the request arrived, tz-aware UTC.
    :param delivered_at: when the relay accepted this recipient's copy, or ``None`` if unknown.
    :param ip: the client address, only for range checks; this module never keeps it.
    :param link_id: which tracked link, for clicks.
    """

    kind: str
    method: str
    user_agent: str
    occurred_at: datetime
    delivered_at: datetime | None
    ip: str | None = None
    link_id: int | None = None


@dataclass(frozen=True, slots=True)
class History:
    """What is already known about the same recipient of the same message, before this event.

    :param human_opens: opens already labelled human.
    :param any_opens: opens of any label, human or machine.
    :param recent_clicks: ``(time, link_id)`` of this recipient's clicks in the last minute.
    :param link_count: how many tracked links the message has.
    """

    human_opens: int = 0
    any_opens: int = 0
    recent_clicks: tuple[tuple[datetime, int], ...] = ()
    link_count: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The label of one event.

    :param machine: ``True`` when the event is not a person's.
    :param reason: the reason's code (see the module's docstring); empty for a plain human
        event. :func:`reason_text` says it in words.
    :param rule: the id of the rule that decided (one of :data:`RULE_IDS`).
    """

    machine: bool
    reason: str
    rule: str

    @property
    def burst(self) -> bool:
        """Whether this verdict found a burst, whose earlier clicks it relabels too."""
        return self.rule == "click_burst"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The timings the rules use, in seconds (from the ``ENGAGE_MACHINE_*`` settings).

    :param fast_open: an open, attachment open or click this soon after delivery is a machine.
    :param click_before_open: a click with no open on record this soon after delivery is a
        security gateway's check; a person whose mail blocks images clicks later.
    :param burst: clicks this close together are looked at as one burst.
    """

    fast_open: float = 5.0
    click_before_open: float = 60.0
    burst: float = 1.0


@dataclass(frozen=True, slots=True)
class _Event:
    """Everything a rule may look at, bundled so every check has the same signature."""

    facts: EventFacts
    history: History
    limits: Thresholds


@dataclass(frozen=True, slots=True)
class _Rule:
    """One row of the rule table: ``check`` answers a reason code when the rule applies."""

    id: str
    machine: bool
    check: Callable[[_Event], str | None]


def _code(name: str, *values: object) -> str:
    return "|".join([name, *(str(value).replace("|", "/") for value in values)])[:200]


# --- user agents -------------------------------------------------------------------------------

# Email security gateways that name themselves in the user agent. Most of them (Safe Links in
# particular) often send an ordinary browser string instead; those are caught by the timing and
# burst rules further down. Specific to email, so not in any crawler list.
_GATEWAYS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), product)
    for pattern, product in (
        (r"proofpoint|urldefense", "Proofpoint"),
        (r"mimecast", "Mimecast"),
        (r"barracuda", "Barracuda"),
        (r"ironport|cisco ?secure", "Cisco IronPort"),
        (r"symantec|messagelabs", "Symantec"),
        (r"trend ?micro", "Trend Micro"),
        (r"sophos", "Sophos"),
        (r"safelinks", "Microsoft Safe Links"),
        (r"forcepoint", "Forcepoint"),
        (r"fireeye|trellix", "Trellix"),
        (r"hornetsecurity", "Hornetsecurity"),
    )
)

# Office asks whether a link exists before handing it to the browser ("ms-office" agent, or
# "Microsoft Office Existence Discovery"); the browser's own request follows, so this probe on a
# link is never the person. Outlook's own image loading is the reader (see _MAIL_CLIENTS).
_OFFICE_LINK_CHECK = re.compile(r"\bms-?office\b|existence discovery", re.IGNORECASE)

# A frozen, years-old Chrome/Edge string seen from Google's networks on image fetches nobody
# asked for; senders know it as the source of false Gmail opens.
_GMAIL_PREFETCH = re.compile(r"Chrome/42\.0\.2311\.135 Safari/537\.36 Edge/12\.246 Mozilla/5\.0$")

# Mail clients and webmail image proxies that load a message's images when a person opens it.
# A web crawler list rightly calls them "not a browser" (CrawlerDetect lists Outlook, the Gmail
# and Yahoo proxies), but for email they are the reader: the open is real, only the agent is
# the client's or the proxy's. The name is kept as the human event's reason.
_MAIL_CLIENTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in (
        (r"googleimageproxy", "Gmail image proxy"),
        (r"yahoomailproxy", "Yahoo Mail proxy"),
        (r"microsoft outlook|microsoft office/", "Outlook"),
        (r"outlook-(?:ios|android)", "Outlook mobile"),
    )
)

# Apple Mail Privacy Protection fetches with a user agent of just this.
_BARE_MOZILLA = "Mozilla/5.0"

# Apple Mail (macOS and iOS) renders with WebKit but, unlike Safari, adds no Safari/ or Version/
# token. MPP fetches that carry the full client string look exactly like this.
_APPLE_MAIL = re.compile(r"^Mozilla/5\.0 \((?:Macintosh|iPhone|iPad)[^)]*\) AppleWebKit/[\d.]+")
_SAFARI_TOKEN = re.compile(r"\b(?:Safari|Version)/")

# Apple owns all of 17.0.0.0/8, and MPP's proxies egress from there (as well as from partner
# networks this module cannot list). Apple's own staff browse from it too, so an Apple employee
# opening a message at work is labelled a prefetch; that is the price of the simple check.
_APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")

# Every web browser, and every in-app browser of a mail or chat app, still starts its agent
# with "Mozilla/"; a link followed by anything else was followed by a program.
_BROWSER = re.compile(r"^Mozilla/\d")

_DETECTOR = CrawlerDetect()


# All three are pure and see the same few values again and again (a recipient's client, a
# proxy's address), while the event worker may classify thousands of events a second: remember.
@functools.lru_cache(maxsize=8192)
def known_program(user_agent: str) -> str | None:
    """The crawler, bot, link preview or HTTP library CrawlerDetect recognises in the agent
    (the matching part, e.g. ``"WhatsApp"`` or ``"python-requests"``), else ``None``."""
    if not user_agent or not _DETECTOR.is_crawler(user_agent):
        return None
    return (_DETECTOR.get_matches() or user_agent).strip()[:80]


@functools.lru_cache(maxsize=4096)
def _gateway(user_agent: str) -> str | None:
    for pattern, product in _GATEWAYS:
        if pattern.search(user_agent):
            return product
    return None


@functools.lru_cache(maxsize=4096)
def _mail_client(user_agent: str) -> str | None:
    for pattern, name in _MAIL_CLIENTS:
        if pattern.search(user_agent):
            return name
    return None


@functools.lru_cache(maxsize=4096)
def _from_apple_network(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        # A malformed address tells us nothing; it must not break the tracking request.
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # Dual-stack servers report IPv4 clients as ::ffff:a.b.c.d.
        address = address.ipv4_mapped
    return address in _APPLE_NETWORK


def _seconds_after_delivery(facts: EventFacts) -> float | None:
    if facts.delivered_at is None:
        return None
    return (facts.occurred_at - facts.delivered_at).total_seconds()


def _is_fast(event: _Event) -> bool:
    delay = _seconds_after_delivery(event.facts)
    # A negative delay (the fetch came in before the relay's answer was recorded) is as fast as
    # it gets, so it counts too.
    return delay is not None and delay <= event.limits.fast_open


# --- rules -------------------------------------------------------------------------------------


def _head(event: _Event) -> str | None:
    # Browsers and image loaders use GET; HEAD only ever comes from something checking the URL.
    return _code("head") if event.facts.method.strip().upper() == "HEAD" else None


def _no_user_agent(event: _Event) -> str | None:
    # Every browser and every mail client sends a user agent; a request without one (no header,
    # or an empty one) is a program, whether it fetched the image or followed a link.
    if event.facts.user_agent.strip():
        return None
    return _code("no_ua_open" if event.facts.kind == OPEN else "no_ua_link")


def _gateway_ua(event: _Event) -> str | None:
    user_agent = event.facts.user_agent
    product = _gateway(user_agent)
    if product is not None:
        return _code("gateway_open" if event.facts.kind == OPEN else "gateway_link", product)
    if event.facts.kind in _LINK_KINDS and _OFFICE_LINK_CHECK.search(user_agent):
        return _code("office_link_check")
    if _GMAIL_PREFETCH.search(user_agent):
        return _code("gmail_prefetch")
    return None


def _apple_mpp(event: _Event) -> str | None:
    facts = event.facts
    # MPP prefetches images only; it never follows links.
    if facts.kind != OPEN:
        return None
    user_agent = facts.user_agent.strip()
    if (
        _from_apple_network(facts.ip)
        or user_agent == _BARE_MOZILLA
        # Apple Mail's own string this soon after delivery is MPP's prefetch, not the reader.
        or (
            _APPLE_MAIL.match(user_agent) is not None
            and _SAFARI_TOKEN.search(user_agent) is None
            and _is_fast(event)
        )
    ):
        return _code("apple_mpp")
    return None


def _known_program(event: _Event) -> str | None:
    user_agent = event.facts.user_agent
    if _mail_client(user_agent) is not None:
        # The reader's own mail client or webmail proxy, or a mail app's in-app browser
        # (Outlook for iOS says so in its agent); a mail client's own fetcher following a
        # link is still caught below, as no browser.
        return None
    program = known_program(user_agent)
    if program is None:
        return None
    return _code("bot_open" if event.facts.kind == OPEN else "bot_link", program)


def _not_a_browser(event: _Event) -> str | None:
    # A link is followed in a browser; a mail client's own fetcher (Outlook's "Microsoft
    # Office/16.0") only ever loads images.
    if event.facts.kind in _LINK_KINDS and not _BROWSER.match(event.facts.user_agent.strip()):
        return _code("not_browser")
    return None


def _fast(event: _Event) -> str | None:
    # Nobody reads a message, opens its attachment or follows its link within seconds of it
    # arriving; gateways that scan it on arrival do.
    delay = _seconds_after_delivery(event.facts)
    if delay is None or delay > event.limits.fast_open:
        return None
    name = "fast_open" if event.facts.kind == OPEN else "fast_click"
    return _code(name, max(0, int(delay)))


def _click_burst(event: _Event) -> str | None:
    facts, history = event.facts, event.history
    if facts.kind != CLICK:
        return None
    window = event.limits.burst
    # Absolute distance, not "before": events can be processed out of order.
    nearby = [
        link_id
        for when, link_id in history.recent_clicks
        if abs((facts.occurred_at - when).total_seconds()) <= window
    ]
    links = set(nearby)
    if facts.link_id is not None:
        links.add(facts.link_id)
    # A person clicks one link, maybe two, and never all of them within a second; a scanner
    # walks the whole message at once.
    if history.link_count >= 2 and len(links) >= history.link_count:
        return _code(EVERY_LINK, f"{window:g}")
    clicks = len(nearby) + 1
    if clicks >= 3:
        return _code(BURST, clicks, f"{window:g}")
    return None


def _click_before_open(event: _Event) -> str | None:
    # A person whose mail client blocks images (Outlook's default for outside senders) clicks
    # with no open on record, minutes or hours after delivery. A security gateway's check also
    # comes with no open, but within moments of delivery, while the message is being scanned:
    # only that is machine. The order of events alone decides nothing.
    facts = event.facts
    if facts.kind not in _LINK_KINDS or event.history.any_opens:
        return None
    delay = _seconds_after_delivery(facts)
    if delay is None or delay > event.limits.click_before_open:
        return None
    return _code("click_before_open", max(0, int(delay)))


def _via_mail_client(event: _Event) -> str | None:
    name = _mail_client(event.facts.user_agent)
    return _code("via", name) if name is not None else None


def _human(event: _Event) -> str | None:
    return ""


# The order matters: first match wins. Signals that name the sender outright (method, user
# agent, network) come before inferences from timing and history, so the reason is the most
# specific one; the person-via-mail-client rule comes after every machine rule, so a proxy
# fetch that also looks like a scan (too fast, say) stays machine. The last rule always matches.
_RULES: tuple[_Rule, ...] = (
    _Rule("head", True, _head),
    _Rule("no_user_agent", True, _no_user_agent),
    _Rule("gateway_ua", True, _gateway_ua),
    _Rule("apple_mpp", True, _apple_mpp),
    _Rule("known_program", True, _known_program),
    _Rule("not_browser", True, _not_a_browser),
    _Rule("fast", True, _fast),
    _Rule("click_burst", True, _click_burst),
    _Rule("click_before_open", True, _click_before_open),
    _Rule("mail_client", False, _via_mail_client),
    _Rule("human", False, _human),
)

#: Every rule id :func:`classify` can answer, in the order the rules are tried.
RULE_IDS: tuple[str, ...] = tuple(rule.id for rule in _RULES)


def classify(
    facts: EventFacts,
    history: History,
    limits: Thresholds | None = None,
) -> Verdict:
    """Label one tracking event as a person's or a machine's.

    :param facts: the request as the tracking endpoint saw it.
    :param history: what is known about this recipient of this message before the event.
    :param limits: the timings; :class:`Thresholds` defaults when not given.
    :raises ValueError: when ``facts.kind`` is not one of :data:`KINDS`.
    """
    if facts.kind not in KINDS:
        raise ValueError(f"unknown tracking event kind: {facts.kind!r}")
    event = _Event(facts, history, limits or Thresholds())
    for rule in _RULES:
        reason = rule.check(event)
        if reason is not None:
            return Verdict(machine=rule.machine, reason=reason, rule=rule.id)
    raise AssertionError("the last rule, human, always matches")


def burst_opens(
    burst_start: datetime,
    delivered_at: datetime | None,
    opens: list[datetime],
    limits: Thresholds | None = None,
) -> list[datetime]:
    """Which of a recipient's human opens a burst over every link shows to be the scanner's.

    A gateway that renders a message on arrival fetches its image and then walks every link:
    an open shortly before such a burst, while the message was still being scanned (no later
    than :attr:`Thresholds.click_before_open` after delivery), was the gateway's too. An open
    from later, a person reading, stays a person's even when a scanner follows their open.
    """
    limits = limits or Thresholds()
    if delivered_at is None:
        return []
    lead = max(10.0, 10 * limits.burst)
    return [
        when
        for when in opens
        if (when - delivered_at).total_seconds() <= limits.click_before_open
        and 0 <= (burst_start - when).total_seconds() <= lead
    ]


# --- reasons in words ----------------------------------------------------------------------------


def _int(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


def reason_text(code: str) -> str:
    """A stored reason code in words, in the reader's language (needs an app context).

    A reason stored before codes existed (or by another part of engage, such as an auto-reply's)
    is not a known code and is returned as it is.
    """
    if not code:
        return ""
    name, *values = code.split("|")
    value = values[0] if values else ""
    texts: dict[str, Callable[[], str]] = {
        "head": lambda: _("checked with a HEAD request, which browsers never send"),
        "no_ua_open": lambda: _("image fetched without a user agent, by a program"),
        "no_ua_link": lambda: _("link followed without a user agent, by a program"),
        "gateway_open": lambda: _(
            "image fetched by the security gateway %(product)s", product=value
        ),
        "gateway_link": lambda: _(
            "link checked by the security gateway %(product)s", product=value
        ),
        "office_link_check": lambda: _("Microsoft Office checking the link before opening it"),
        "gmail_prefetch": lambda: _("image prefetched by Gmail, not opened by the reader"),
        "apple_mpp": lambda: _("Apple Mail Privacy Protection prefetch"),
        "bot_open": lambda: _("image fetched by %(agent)s, a bot or program", agent=value),
        "bot_link": lambda: _(
            "link followed by %(agent)s, a bot, link preview or program", agent=value
        ),
        "not_browser": lambda: _("link followed by a program, not a web browser"),
        "fast_open": lambda: ngettext(
            "opened %(num)d second after delivery, sooner than anyone reads",
            "opened %(num)d seconds after delivery, sooner than anyone reads",
            _int(value),
        ),
        "fast_click": lambda: ngettext(
            "link followed %(num)d second after delivery, sooner than anyone reads",
            "link followed %(num)d seconds after delivery, sooner than anyone reads",
            _int(value),
        ),
        EVERY_LINK: lambda: _(
            "every link followed within %(seconds)s s, as a link scanner does", seconds=value
        ),
        BURST: lambda: _(
            "%(num)s clicks within %(seconds)s s, as a link scanner does",
            num=value,
            seconds=values[1] if len(values) > 1 else "",
        ),
        BURST_OPEN: lambda: _("opened by the link scanner that then followed every link"),
        "click_before_open": lambda: ngettext(
            "link followed %(num)d second after delivery, before any open: a security check",
            "link followed %(num)d seconds after delivery, before any open: a security check",
            _int(value),
        ),
        "via": lambda: _("via %(client)s", client=value),
    }
    text = texts.get(name)
    return text() if text is not None else code
