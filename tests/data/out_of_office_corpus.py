"""Realistic out-of-office auto-replies (English and German) with the return date a person
reads in each, for :mod:`engage.out_of_office` (SPEC S42).

Every reply was written on Monday 30 November 2026 unless it says otherwise. ``None`` means a
person could not tell a return date for sure, so engage must not use one.
"""

from __future__ import annotations

from datetime import date

WRITTEN = date(2026, 11, 30)

#: (subject, text, written, expected return date)
CORPUS: list[tuple[str, str, date, date | None]] = [
    # -- English --------------------------------------------------------------------------
    (
        "Automatic reply: Quarterly review",
        "Thank you for your email. I am out of the office until Monday, 7 December 2026 "
        "with limited access to email. For urgent matters please contact sales@example.com.",
        WRITTEN,
        date(2026, 12, 7),
    ),
    (
        "Out of Office: Re: Proposal",
        "Hi,\n\nI'm currently on annual leave and will be back on December 9th.\n\nBest,\nTom",
        WRITTEN,
        date(2026, 12, 9),
    ),
    (
        "Auto-Reply: Your message",
        "I will return to the office on Wed, Dec 2. I will respond to your email as soon as "
        "possible upon my return.",
        WRITTEN,
        date(2026, 12, 2),
    ),
    (
        "Out of office",
        "I am away from 30 November to 4 December inclusive and will reply when I am back.",
        WRITTEN,
        date(2026, 12, 5),
    ),
    (
        "Automatic reply: Meeting next week",
        "I'm attending a conference from Nov 30 through Dec 3. Expect a delayed response.",
        WRITTEN,
        date(2026, 12, 4),
    ),
    (
        "Out of Office AutoReply",
        "I am out of the office returning 2026-12-08. If you need immediate assistance, "
        "please call our office.",
        WRITTEN,
        date(2026, 12, 8),
    ),
    (
        "Automatic reply: Quarterly review",
        "Thanks for your message. I'm on parental leave until 15 January 2027. During this "
        "time my colleague Jane Doe (jane@example.com) will look after my accounts.",
        WRITTEN,
        date(2027, 1, 15),
    ),
    (
        "Away: Quarterly review",
        "I am travelling with limited access to email. I'll be back in the office on "
        "Thursday 3rd December.\n\nKind regards\nPriya",
        WRITTEN,
        date(2026, 12, 3),
    ),
    (
        "Automatic reply: Quarterly review",
        "I am currently out of the office and will return on 12/14/2026.",
        WRITTEN,
        date(2026, 12, 14),
    ),
    (
        "Automatic reply: Quarterly review",
        "I am out of the office and back on 14/12/2026.",
        WRITTEN,
        date(2026, 12, 14),
    ),
    (
        "Automatic reply: Quarterly review",
        "I'm out of the office until 12/07. Please expect a delay in my response.",
        WRITTEN,
        date(2026, 12, 7),  # 12 July has passed: only 7 December can be meant
    ),
    (
        "Automatic reply: Quarterly review",
        "I am on leave and will return on 01/02/2027.",
        WRITTEN,
        None,  # 1 February or 2 January: both could be meant
    ),
    (
        "Out of office",
        "I'm out sick today and will be back tomorrow.",
        WRITTEN,
        date(2026, 12, 1),
    ),
    (
        "Automatic reply",
        "I'm out of the office and will be back on Monday.",
        date(2026, 12, 3),  # a Thursday
        date(2026, 12, 7),
    ),
    (
        "Automatic reply: Quarterly review",
        "Thank you for your email. I am currently out of the office with no access to email. "
        "I will respond to your message when I return.",
        WRITTEN,
        None,  # no date at all
    ),
    (
        "Out of Office: Quarterly review",
        "Happy holidays! The office is closed over the holidays. I'll be back on January 4th "
        "and will get back to you then.",
        date(2026, 12, 23),
        date(2027, 1, 4),
    ),
    (
        "Automatic reply: Quarterly review",
        "I no longer work at Example Ltd. Please contact info@example.com instead.",
        WRITTEN,
        None,
    ),
    (
        "Re: Quarterly review [auto-reply]",
        "I'm out until Dec 10 with very limited access to email.\n\n"
        "-----Original Message-----\nFrom: Mia Berg\nSent: Monday, 30 November 2026 09:00\n"
        "Subject: Quarterly review",
        WRITTEN,
        date(2026, 12, 10),
    ),
    (
        "Out of office until 11 December",
        "Thank you for getting in touch.",
        WRITTEN,
        date(2026, 12, 11),
    ),
    (
        "Autoreply",
        "I was out of the office until November 20. Sorry for the late reply.",
        WRITTEN,
        None,  # a date in the past is no return date
    ),
    # -- German ---------------------------------------------------------------------------
    (
        "Abwesenheitsnotiz: Quartalsgespräch",
        "Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 4. Dezember 2026 nicht im "
        "Büro. In dringenden Fällen wenden Sie sich bitte an vertrieb@example.de.",
        WRITTEN,
        date(2026, 12, 5),
    ),
    (
        "Automatische Antwort: Quartalsgespräch",
        "Guten Tag,\n\nich bin ab dem 7.12.2026 wieder im Büro und melde mich dann bei Ihnen."
        "\n\nMit freundlichen Grüßen\nJonas Weber",
        WRITTEN,
        date(2026, 12, 7),
    ),
    (
        "Abwesenheitsnotiz",
        "Ich befinde mich vom 30.11. bis 04.12. im Urlaub. Ihre E-Mail wird nicht weitergeleitet.",
        WRITTEN,
        date(2026, 12, 5),
    ),
    (
        "Automatische Antwort: Angebot",
        "Hallo,\nich bin bis zum 9. Dezember auf Dienstreise und habe nur eingeschränkt Zugriff "
        "auf meine E-Mails.",
        WRITTEN,
        date(2026, 12, 10),
    ),
    (
        "Abwesend: Angebot",
        "Ab Montag, den 14. Dezember bin ich wieder erreichbar.",
        WRITTEN,
        date(2026, 12, 14),
    ),
    (
        "Automatische Antwort",
        "Ich bin derzeit nicht im Haus und am 08.12.26 wieder zurück.",
        WRITTEN,
        date(2026, 12, 8),
    ),
    (
        "Abwesenheitsnotiz: Ihre Anfrage",
        "Sehr geehrte Damen und Herren, ich bin in Elternzeit bis 31. Januar 2027. Bitte "
        "wenden Sie sich an meine Kollegin Frau Schmidt.",
        WRITTEN,
        date(2027, 2, 1),
    ),
    (
        "Automatische Antwort: Quartalsgespräch",
        "Ich bin krankheitsbedingt abwesend und voraussichtlich ab Mittwoch wieder im Büro.",
        WRITTEN,
        date(2026, 12, 2),
    ),
    (
        "Abwesenheitsnotiz",
        "Vielen Dank für Ihre E-Mail. Ich bin momentan nicht im Büro. Ihre Nachricht wird "
        "nicht weitergeleitet.",
        WRITTEN,
        None,
    ),
    (
        "Urlaub bis 11.12.",
        "Ihre Nachricht wird nach meiner Rückkehr bearbeitet.",
        WRITTEN,
        date(2026, 12, 12),
    ),
    (
        "Automatische Antwort: Termin",
        "Bin morgen wieder da.",
        WRITTEN,
        date(2026, 12, 1),
    ),
    (
        "Abwesenheitsnotiz: Angebot",
        "Frohe Feiertage! Unser Büro ist vom 24.12.2026 bis 01.01.2027 geschlossen. Ab dem "
        "4. Januar 2027 sind wir wieder für Sie da.",
        date(2026, 12, 22),
        date(2027, 1, 4),
    ),
    (
        "AW: Quartalsgespräch (Abwesenheit)",
        "Ich bin bis 3.12. nicht erreichbar.\n\n"
        "Von: Mia Berg\nGesendet: Montag, 30. November 2026 09:00\nBetreff: Quartalsgespräch",
        WRITTEN,
        date(2026, 12, 4),
    ),
    (
        "Automatische Antwort",
        "Ich bin ab 17. Dezember wieder zurück im Büro.",
        WRITTEN,
        date(2026, 12, 17),
    ),
    (
        "Abwesenheitsnotiz",
        "Ich war bis zum 20.11. im Urlaub.",
        WRITTEN,
        None,  # past
    ),
]
