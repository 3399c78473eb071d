"""Telling machine tracking events from people (SPEC S14).

A followed message records an event whenever its pixel is fetched or one of its tracked links
(or followed attachments) is followed. Many of those requests are not a person reading: mail
privacy proxies fetch every image shortly after delivery, security gateways follow every link
before the recipient sees the message, chat apps unfurl links, scripts probe URLs. Such events
are kept, labelled *machine* with a short reason, and left out of opens, clicks, cards and
reminder conditions.

:func:`classify` is a pure function over plain values: the event, what is already known about
the same recipient of the same message, and two thresholds. The rules live in one ordered
table, :data:`_RULES`; the first rule that matches decides. The module stores nothing and needs
neither Flask nor the database.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

OPEN = "open"
CLICK = "click"
ATTACHMENT_OPEN = "attachment_open"
KINDS = frozenset({OPEN, CLICK, ATTACHMENT_OPEN})

# Kinds that are a followed link rather than a fetched image: scanners follow these, image
# proxies do not.
_LINK_KINDS = frozenset({CLICK, ATTACHMENT_OPEN})


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
    :param reason: short, stable, human-readable; empty for a plain human event.
    :param rule: the id of the rule that decided (one of :data:`RULE_IDS`).
    """

    machine: bool
    reason: str
    rule: str


@dataclass(frozen=True, slots=True)
class _Event:
    """Everything a rule may look at, bundled so every check has the same signature."""

    facts: EventFacts
    history: History
    fast_open_seconds: float
    burst_seconds: float


@dataclass(frozen=True, slots=True)
class _Rule:
    """One row of the rule table: ``check`` answers a reason when the rule applies."""

    id: str
    machine: bool
    check: Callable[[_Event], str | None]


def _seconds(value: float) -> str:
    """Seconds as people write them in a reason: ``1 s``, ``0.5 s``."""
    return f"{value:g} s"


# --- user agents -------------------------------------------------------------------------------

# Products that announce themselves in the user agent. Most gateways (Safe Links in particular)
# often send an ordinary browser user agent from their own networks instead; those are caught,
# when at all, by the timing and history rules further down. Specific products come before the
# generic patterns so the reason names the product.
_SCANNER_AGENTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), product)
    for pattern, product in (
        (r"proofpoint|urldefense", "Proofpoint"),
        (r"mimecast", "Mimecast"),
        (r"barracuda", "Barracuda"),
        (r"ironport|cisco ?secure", "Cisco IronPort"),
        (r"symantec|messagelabs|broadcom", "Symantec"),
        (r"trend ?micro", "Trend Micro"),
        (r"sophos", "Sophos"),
        (r"safelinks", "Microsoft Safe Links"),
        # Office asks whether a link exists before handing it to the browser; the browser's own
        # request follows, so this probe is never the person. The Outlook desktop client itself
        # says "Microsoft Office/16.0 (...Microsoft Outlook...)" and must not match here.
        (r"\bms-office\b|\bmsoffice\b|existence discovery", "Microsoft Office link check"),
        (r"skypeuripreview", "Microsoft Teams link preview"),
        (r"bingpreview", "BingPreview"),
        (r"google-safety", "Google Safe Browsing"),
        # A frozen, years-old Chrome/Edge string seen from Google's networks on image fetches
        # nobody asked for; senders know it as the source of false Gmail opens.
        (
            r"Chrome/42\.0\.2311\.135 Safari/537\.36 Edge/12\.246 Mozilla/5\.0$",
            "Gmail prefetch",
        ),
        (r"slackbot|slack-imgproxy", "Slack link preview"),
        (r"linkedinbot", "LinkedIn link preview"),
        (r"headlesschrome|phantomjs|puppeteer|playwright|selenium", "headless browser"),
        (r"\bcurl/", "curl"),
        (r"\bwget/", "Wget"),
        (r"python-requests", "python-requests"),
        (r"python-urllib|aiohttp|python-httpx", "Python HTTP client"),
        (r"go-http-client", "Go-http-client"),
        (r"^java/|apache-httpclient|libwww-perl|node-fetch|axios/", "HTTP library"),
        # "bot" as a word ending catches Googlebot, Discordbot, TelegramBot and friends; the
        # look-behind spares CUBOT, a phone maker whose model names appear in Android agents.
        (r"(?<!cu)bot\b|crawler|spider", "bot"),
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

# Proxies that fetch images when a person opens the message in that webmail or app: the open is
# real, only the address and user agent are the proxy's.
_PERSON_PROXIES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in (
        (r"googleimageproxy", "Gmail image proxy"),
        (r"yahoomailproxy", "Yahoo Mail proxy"),
    )
)


# Both are pure and see the same few values again and again (a recipient's client, a proxy's
# address), while the event worker may classify thousands of events a second: remember them.
@functools.lru_cache(maxsize=4096)
def _scanner_product(user_agent: str) -> str | None:
    for pattern, product in _SCANNER_AGENTS:
        if pattern.search(user_agent):
            return product
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
    return delay is not None and delay <= event.fast_open_seconds


# --- rules -------------------------------------------------------------------------------------


def _head(event: _Event) -> str | None:
    # Browsers and image loaders use GET; HEAD only ever comes from something checking the URL.
    return "HEAD request" if event.facts.method.strip().upper() == "HEAD" else None


def _scanner_ua(event: _Event) -> str | None:
    product = _scanner_product(event.facts.user_agent)
    if product is None:
        return None
    if event.facts.kind == OPEN:
        return f"image fetched by {product}"
    return f"link scanner ({product})"


def _empty_ua(event: _Event) -> str | None:
    # Every browser sends a user agent when it follows a link; gateways checking links often
    # send none. Pixel fetches are left alone: some mail apps load images without one.
    if event.facts.kind in _LINK_KINDS and not event.facts.user_agent.strip():
        return "link followed without a user agent"
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
        return "Apple Mail Privacy Protection prefetch"
    return None


def _fast_open(event: _Event) -> str | None:
    # Nobody reads a message, or opens its attachment, within seconds of it arriving; gateways
    # that scan it on arrival do.
    delay = _seconds_after_delivery(event.facts)
    if event.facts.kind == CLICK or delay is None or delay > event.fast_open_seconds:
        return None
    return f"opened {max(0, int(delay))} s after delivery"


def _click_burst(event: _Event) -> str | None:
    facts, history = event.facts, event.history
    if facts.kind != CLICK:
        return None
    # Absolute distance, not "before": events can be processed out of order.
    nearby = [
        link_id
        for when, link_id in history.recent_clicks
        if abs((facts.occurred_at - when).total_seconds()) <= event.burst_seconds
    ]
    links = set(nearby)
    if facts.link_id is not None:
        links.add(facts.link_id)
    window = _seconds(event.burst_seconds)
    # A person clicks one link, maybe two, and never all of them within a second; a scanner
    # walks the whole message at once.
    if history.link_count >= 2 and len(links) >= history.link_count:
        return f"clicked every link within {window}"
    clicks = len(nearby) + 1
    if clicks >= 3:
        return f"{clicks} clicks within {window}"
    return None


def _click_before_open(event: _Event) -> str | None:
    # A person who clicks has normally opened the message first, and the open is recorded even
    # when only a privacy proxy fetched it. A person whose client blocks images (Outlook desktop
    # does by default) also clicks with no open on record, and this rule mislabels them. The
    # product decision is still to count such clicks as machine: a gateway's click before the
    # message reaches the inbox must not pass for engagement, and it looks exactly the same.
    if event.facts.kind == CLICK and event.history.any_opens == 0:
        return "click before any open"
    return None


def _proxy_human(event: _Event) -> str | None:
    for pattern, name in _PERSON_PROXIES:
        if pattern.search(event.facts.user_agent):
            return f"via {name}"
    return None


def _human(event: _Event) -> str | None:
    return ""


# The order matters: first match wins. Signals that name the sender outright (method, user agent,
# network) come before inferences from timing and history, so the reason is the most specific
# one; the person-via-proxy rule comes after every machine rule, so a proxy fetch that also looks
# like a scan (too fast, say) stays machine. The last rule always matches.
_RULES: tuple[_Rule, ...] = (
    _Rule("head", True, _head),
    _Rule("scanner_ua", True, _scanner_ua),
    _Rule("empty_ua", True, _empty_ua),
    _Rule("apple_mpp", True, _apple_mpp),
    _Rule("fast_open", True, _fast_open),
    _Rule("click_burst", True, _click_burst),
    _Rule("click_before_open", True, _click_before_open),
    _Rule("proxy_human", False, _proxy_human),
    _Rule("human", False, _human),
)

#: Every rule id :func:`classify` can answer, in the order the rules are tried.
RULE_IDS: tuple[str, ...] = tuple(rule.id for rule in _RULES)


def classify(
    facts: EventFacts,
    history: History,
    *,
    fast_open_seconds: float = 5.0,
    burst_seconds: float = 1.0,
) -> Verdict:
    """Label one tracking event as a person's or a machine's.

    :param facts: the request as the tracking endpoint saw it.
    :param history: what is known about this recipient of this message before the event.
    :param fast_open_seconds: an open or attachment open this soon after delivery is a machine.
    :param burst_seconds: clicks this close together are looked at as one burst.
    :raises ValueError: when ``facts.kind`` is not one of :data:`KINDS`.
    """
    if facts.kind not in KINDS:
        raise ValueError(f"unknown tracking event kind: {facts.kind!r}")
    event = _Event(facts, history, fast_open_seconds, burst_seconds)
    for rule in _RULES:
        reason = rule.check(event)
        if reason is not None:
            return Verdict(machine=rule.machine, reason=reason, rule=rule.id)
    raise AssertionError("the last rule, human, always matches")
