"""Machine tracking events told apart from people (SPEC S14), one row per situation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from engage.machine import (
    RULE_IDS,
    EventFacts,
    History,
    Thresholds,
    Verdict,
    burst_opens,
    classify,
    known_program,
)

DELIVERED = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

# Real user agents, as their products send them.
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
CHROME_ANDROID_CUBOT = (
    "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/89.0.4389.105 Mobile Safari/537.36"
)
OUTLOOK_DESKTOP = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)"
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0"
)
APPLE_MAIL_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
APPLE_MAIL_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
APPLE_MPP = "Mozilla/5.0"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
BING_PREVIEW = "Mozilla/5.0 (compatible; BingPreview/1.0b)"
BARRACUDA = "Barracuda Sentinel (EE)"
# Proofpoint and Mimecast mostly fetch with an ordinary browser string; these rows check that
# their name is recognised when it does appear in the agent.
PROOFPOINT = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
MIMECAST = "Mimecast"
OFFICE_LINK_CHECK = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"
TEAMS_PREVIEW = (
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 "
    "skype-url-preview@microsoft.com"
)
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
LINKEDINBOT = (
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)
PYTHON_REQUESTS = "python-requests/2.31.0"
CURL = "curl/8.5.0"
WGET = "Wget/1.21.4"
GO_HTTP = "Go-http-client/1.1"

OPENED = History(human_opens=1, any_opens=1, link_count=3)
NEVER_OPENED = History(link_count=3)


def event(
    user_agent: str,
    *,
    kind: str = "open",
    after: float = 3600.0,
    method: str = "GET",
    ip: str | None = None,
    link_id: int | None = None,
    delivered: datetime | None = DELIVERED,
) -> EventFacts:
    """An event ``after`` seconds past delivery."""
    if kind == "click" and link_id is None:
        link_id = 1
    return EventFacts(
        kind=kind,
        method=method,
        user_agent=user_agent,
        occurred_at=DELIVERED + timedelta(seconds=after),
        delivered_at=delivered,
        ip=ip,
        link_id=link_id,
    )


def clicks_before(at: float, *pairs: tuple[float, int]) -> tuple[tuple[datetime, int], ...]:
    """Recent clicks, each ``seconds_earlier`` before the click at ``at`` seconds."""
    base = DELIVERED + timedelta(seconds=at)
    return tuple((base - timedelta(seconds=earlier), link) for earlier, link in pairs)


@dataclass(frozen=True, slots=True)
class Row:
    facts: EventFacts
    history: History
    machine: bool
    rule: str
    reason: str | None = None  # checked exactly when given


ROWS: list[tuple[str, Row]] = [
    # Apple Mail Privacy Protection
    (
        "apple-mpp-bare-user-agent",
        Row(
            event(APPLE_MPP, after=900),
            History(),
            True,
            "apple_mpp",
            "apple_mpp",
        ),
    ),
    (
        "apple-mpp-apple-network",
        Row(event(APPLE_MAIL_MAC, after=7200, ip="17.58.63.14"), History(), True, "apple_mpp"),
    ),
    (
        "apple-mpp-apple-network-ipv4-mapped",
        Row(event(APPLE_MAIL_IPHONE, ip="::ffff:17.1.2.3"), History(), True, "apple_mpp"),
    ),
    (
        "apple-mail-string-seconds-after-delivery",
        Row(event(APPLE_MAIL_MAC, after=2, ip="203.0.113.9"), History(), True, "apple_mpp"),
    ),
    (
        "apple-mail-reader-hours-later",
        Row(event(APPLE_MAIL_MAC, after=7200, ip="203.0.113.9"), History(), False, "human", ""),
    ),
    (
        "apple-mail-iphone-reader",
        Row(event(APPLE_MAIL_IPHONE, ip="2001:db8::7"), History(), False, "human"),
    ),
    # Proxies fetching for a person
    (
        "gmail-image-proxy-open",
        Row(
            event(GMAIL_PROXY, ip="66.249.84.1"),
            History(),
            False,
            "mail_client",
            "via|Gmail image proxy",
        ),
    ),
    (
        "yahoo-mail-proxy-open",
        Row(event(YAHOO_PROXY), History(), False, "mail_client", "via|Yahoo Mail proxy"),
    ),
    (
        "gmail-image-proxy-too-fast",
        Row(event(GMAIL_PROXY, after=2), History(), True, "fast", "fast_open|2"),
    ),
    (
        "gmail-unrequested-prefetch",
        Row(
            event(GMAIL_PREFETCH, after=25, ip="108.177.2.32"),
            History(),
            True,
            "gateway_ua",
            "gmail_prefetch",
        ),
    ),
    # People in browsers and mail clients
    ("chrome-windows-click", Row(event(CHROME_WINDOWS, kind="click"), OPENED, False, "human", "")),
    (
        "safari-iphone-click",
        Row(event(SAFARI_IPHONE, kind="click", link_id=2), OPENED, False, "human"),
    ),
    ("firefox-linux-open", Row(event(FIREFOX_LINUX), History(), False, "human")),
    (
        "outlook-desktop-open",
        Row(event(OUTLOOK_DESKTOP, after=1800), History(), False, "mail_client"),
    ),
    ("thunderbird-open", Row(event(THUNDERBIRD, after=86400), OPENED, False, "human")),
    (
        "android-chrome-on-a-cubot-phone-click",
        Row(event(CHROME_ANDROID_CUBOT, kind="click"), OPENED, False, "human"),
    ),
    (
        "edge-attachment-open",
        Row(event(EDGE_WINDOWS, kind="attachment_open", after=600), OPENED, False, "human"),
    ),
    # Gateways, link scanners, unfurlers and scripts
    (
        "bingpreview-click",
        Row(
            event(BING_PREVIEW, kind="click", after=4),
            NEVER_OPENED,
            True,
            "known_program",
            "bot_link|BingPreview",
        ),
    ),
    (
        "proofpoint-click",
        Row(
            event(PROOFPOINT, kind="click", after=8),
            OPENED,
            True,
            "gateway_ua",
            "gateway_link|Proofpoint",
        ),
    ),
    (
        "mimecast-click",
        Row(event(MIMECAST, kind="click"), OPENED, True, "gateway_ua", "gateway_link|Mimecast"),
    ),
    (
        "barracuda-sentinel-click",
        Row(event(BARRACUDA, kind="click"), OPENED, True, "gateway_ua", "gateway_link|Barracuda"),
    ),
    (
        "office-link-check-click",
        Row(
            event(OFFICE_LINK_CHECK, kind="click"),
            OPENED,
            True,
            "gateway_ua",
            "office_link_check",
        ),
    ),
    (
        "teams-link-preview-click",
        Row(
            event(TEAMS_PREVIEW, kind="click"),
            OPENED,
            True,
            "known_program",
            None,
        ),
    ),
    (
        "slack-unfurl-click",
        Row(
            event(SLACKBOT, kind="click"),
            OPENED,
            True,
            "known_program",
            None,
        ),
    ),
    (
        "linkedin-unfurl-click",
        Row(
            event(LINKEDINBOT, kind="click"),
            OPENED,
            True,
            "known_program",
            None,
        ),
    ),
    (
        "googlebot-click",
        Row(event(GOOGLEBOT, kind="click"), OPENED, True, "known_program"),
    ),
    (
        "headless-chrome-click",
        Row(
            event(HEADLESS_CHROME, kind="click"),
            OPENED,
            True,
            "known_program",
            None,
        ),
    ),
    (
        "python-requests-click",
        Row(
            event(PYTHON_REQUESTS, kind="click"),
            OPENED,
            True,
            "known_program",
            "bot_link|python-requests",
        ),
    ),
    (
        "go-http-client-click",
        Row(
            event(GO_HTTP, kind="click"),
            OPENED,
            True,
            "known_program",
            "bot_link|Go-http-client",
        ),
    ),
    ("curl-open", Row(event(CURL), History(), True, "known_program", "bot_open|curl")),
    (
        "wget-attachment-open",
        Row(event(WGET, kind="attachment_open"), OPENED, True, "known_program", "bot_link|Wget"),
    ),
    (
        "click-without-user-agent",
        Row(event("", kind="click"), OPENED, True, "no_user_agent", "no_ua_link"),
    ),
    ("open-without-user-agent", Row(event(""), History(), True, "no_user_agent", "no_ua_open")),
    # HEAD requests
    (
        "head-click-with-browser-agent",
        Row(event(CHROME_WINDOWS, kind="click", method="HEAD"), OPENED, True, "head", "head"),
    ),
    ("head-open", Row(event(THUNDERBIRD, method="head"), History(), True, "head")),
    # Opens within seconds of delivery
    (
        "chrome-open-3-s-after-delivery",
        Row(
            event(CHROME_WINDOWS, after=3.7),
            History(),
            True,
            "fast",
            "fast_open|3",
        ),
    ),
    (
        "attachment-open-1-s-after-delivery",
        Row(
            event(EDGE_WINDOWS, kind="attachment_open", after=1),
            OPENED,
            True,
            "fast",
            "fast_click|1",
        ),
    ),
    (
        "open-before-delivery-was-recorded",
        Row(
            event(FIREFOX_LINUX, after=-0.5),
            History(),
            True,
            "fast",
            "fast_open|0",
        ),
    ),
    (
        "open-just-past-the-threshold",
        Row(event(FIREFOX_LINUX, after=5.5), History(), False, "human"),
    ),
    (
        "open-with-unknown-delivery-time",
        Row(event(FIREFOX_LINUX, after=1, delivered=None), History(), False, "human"),
    ),
    # Clicks before any open
    (
        "click-before-any-open",
        Row(
            event(CHROME_WINDOWS, kind="click", after=40),
            NEVER_OPENED,
            True,
            "click_before_open",
            "click_before_open|40",
        ),
    ),
    (
        "click-after-a-machine-open",
        Row(
            event(SAFARI_IPHONE, kind="click"),
            History(human_opens=0, any_opens=1, link_count=3),
            False,
            "human",
        ),
    ),
    # Click bursts
    (
        "clicked-every-link-within-a-second",
        Row(
            event(CHROME_WINDOWS, kind="click", after=60, link_id=3),
            History(1, 1, clicks_before(60, (0.4, 1), (0.2, 2)), 3),
            True,
            "click_burst",
            "every_link|1",
        ),
    ),
    (
        "three-clicks-on-one-link-within-a-second",
        Row(
            event(CHROME_WINDOWS, kind="click", after=60, link_id=2),
            History(1, 1, clicks_before(60, (0.5, 2), (0.1, 2)), 5),
            True,
            "click_burst",
            "click_burst|3|1",
        ),
    ),
    (
        "burst-wins-over-click-before-open",
        Row(
            event(CHROME_WINDOWS, kind="click", after=30, link_id=2),
            History(0, 0, clicks_before(30, (0.3, 1)), 2),
            True,
            "click_burst",
            "every_link|1",
        ),
    ),
    (
        "both-links-clicked-half-a-minute-apart",
        Row(
            event(CHROME_WINDOWS, kind="click", after=90, link_id=2),
            History(1, 1, clicks_before(90, (30, 1)), 2),
            False,
            "human",
        ),
    ),
    (
        "two-quick-clicks-on-a-long-message",
        Row(
            event(CHROME_WINDOWS, kind="click", after=90, link_id=2),
            History(1, 1, clicks_before(90, (0.5, 1)), 6),
            False,
            "human",
        ),
    ),
    # People whose mail blocks images click with no open on record, later than a gateway
    (
        "person-clicks-minutes-after-delivery-without-an-open",
        Row(event(CHROME_WINDOWS, kind="click", after=420), NEVER_OPENED, False, "human", ""),
    ),
    (
        "gateway-clicks-seconds-after-delivery-with-a-browser-agent",
        Row(event(EDGE_WINDOWS, kind="click", after=9), NEVER_OPENED, True, "click_before_open"),
    ),
    # A link followed by a program no crawler list names
    (
        "java-http-client-click",
        Row(event("Java-http-client/17.0.9", kind="click"), OPENED, True, "not_browser"),
    ),
    # Link previews of chat apps after a person's open
    (
        "whatsapp-preview-click",
        Row(event("WhatsApp/2.23.20.0 A", kind="click"), OPENED, True, "known_program"),
    ),
    (
        "facebook-preview-click",
        Row(
            event(
                "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
                kind="click",
            ),
            OPENED,
            True,
            "known_program",
        ),
    ),
]


@pytest.mark.parametrize("row", [pytest.param(row, id=name) for name, row in ROWS])
def test_an_event_is_labelled_by_the_first_rule_that_matches(row: Row) -> None:
    verdict = classify(row.facts, row.history)
    assert (verdict.machine, verdict.rule) == (row.machine, row.rule), verdict.reason
    if verdict.machine:
        assert verdict.reason
    if verdict.rule == "human":
        assert verdict.reason == ""
    if row.reason is not None:
        assert verdict.reason == row.reason


def test_every_rule_in_the_table_is_exercised_by_a_row() -> None:
    decided = {classify(row.facts, row.history).rule for _, row in ROWS}
    assert decided <= set(RULE_IDS)
    assert set(RULE_IDS) - decided == set(), "a rule no row reaches is dead or untested"


def test_the_row_ids_are_unique_and_there_are_enough_of_them() -> None:
    names = [name for name, _ in ROWS]
    assert len(names) == len(set(names))
    assert len(names) >= 25


def test_a_longer_fast_open_window_turns_a_slow_open_into_a_machine_one() -> None:
    facts = event(CHROME_WINDOWS, after=20)
    assert classify(facts, History()).rule == "human"
    verdict = classify(facts, History(), Thresholds(fast_open=30))
    assert verdict == Verdict(machine=True, reason="fast_open|20", rule="fast")


def test_a_shorter_burst_window_lets_quick_human_clicks_through() -> None:
    facts = event(CHROME_WINDOWS, kind="click", after=60, link_id=2)
    history = History(1, 1, clicks_before(60, (0.4, 1)), 2)
    assert classify(facts, history).reason == "every_link|1"
    assert classify(facts, history, Thresholds(burst=0.25)).rule == "human"
    assert classify(facts, history, Thresholds(burst=0.5)).reason == "every_link|0.5"


def test_a_click_burst_counts_clicks_processed_out_of_order() -> None:
    facts = event(CHROME_WINDOWS, kind="click", after=60, link_id=1)
    later = DELIVERED + timedelta(seconds=60.3)
    verdict = classify(facts, History(1, 1, ((later, 2),), 2))
    assert verdict.rule == "click_burst"


def test_a_malformed_address_is_ignored_rather_than_raised() -> None:
    verdict = classify(event(FIREFOX_LINUX, ip="not-an-address"), History())
    assert verdict.rule == "human"


def test_an_unknown_event_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tracking event kind"):
        classify(event(CHROME_WINDOWS, kind="reply"), History())


def test_the_rule_table_ends_with_the_plain_human_rule() -> None:
    assert RULE_IDS[-1] == "human"
    assert len(RULE_IDS) == len(set(RULE_IDS))


def test_http_libraries_of_every_common_language_are_known_programs() -> None:
    libraries = [
        "Java/1.8.0_381",
        "Apache-HttpClient/4.5.14 (Java/17.0.8)",
        "okhttp/4.12.0",
        "RestSharp/110.2.0.0",
        "axios/1.6.2",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "undici",
        "Ruby",
        "Faraday v2.7.11",
        "GuzzleHttp/7",
        "reqwest/0.11.22",
        "Go-http-client/2.0",
        "python-requests/2.31.0",
        "Python/3.11 aiohttp/3.9.1",
        "python-httpx/0.25.2",
        "curl/8.4.0",
        "Wget/1.21.4",
        "libwww-perl/6.72",
    ]
    assert [ua for ua in libraries if known_program(ua) is None] == []
    assert known_program(CHROME_WINDOWS) is None and known_program(SAFARI_IPHONE) is None


def test_an_open_just_before_a_burst_over_every_link_was_the_scanners() -> None:
    burst = DELIVERED + timedelta(seconds=20)
    on_arrival = DELIVERED + timedelta(seconds=14)
    read_later = DELIVERED + timedelta(minutes=30)
    assert burst_opens(burst, DELIVERED, [on_arrival]) == [on_arrival]
    # A person's open long after delivery stays theirs even when a scanner follows it.
    later_burst = read_later + timedelta(seconds=1)
    assert burst_opens(later_burst, DELIVERED, [read_later]) == []


def test_reasons_are_told_in_the_readers_language(app) -> None:
    from engage.machine import reason_text

    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert reason_text("fast_open|3") == (
            "opened 3 seconds after delivery, sooner than anyone reads"
        )
        assert reason_text("bot_link|WhatsApp") == (
            "link followed by WhatsApp, a bot, link preview or program"
        )
        assert reason_text("an old reason in words") == "an old reason in words"


def test_a_german_rep_reads_the_reasons_in_german(app) -> None:
    from engage.machine import reason_text

    app.extensions["babel"].locale_selector = lambda: "de"
    with app.test_request_context():
        assert reason_text("click_before_open|9") == (
            "Link 9 Sekunden nach der Zustellung aufgerufen, vor jedem Öffnen: eine Sicherheitsprüfung"
        )
        assert reason_text("bot_open|curl") == "Bild von curl abgerufen, einem Bot oder Programm"
