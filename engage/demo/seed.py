"""The demo CRM's starting data: a small sales organisation and its customers.

Everything here is fixed (no randomness), so that every run of the demo, every test and every
screenshot starts from the same people and places. The addresses cover several countries and
US time zones, so that *Send later* recommends different times for different recipients; a few
people refuse to be followed, so that the *Blocked* follow status can be seen. A few email
templates written by the sales manager give *Insert template* something to offer at once.
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

# engage has no public API for writing templates (managers write them in its pages), so the
# demo seeds engage's own table directly, as a host's data migration would.
from engage.content import html_to_text
from engage.models import EmailTemplate

from .models import Account, Contact, Lead, Opportunity, User, db

#: street, city, postal code, region, country (ISO 3166-1 alpha-2)
Address = tuple[str, str, str, str, str]

TEAM_NORTH = "Team North"
TEAM_SOUTH = "Team South"

# (key, name, email, role, team, timezone)
USERS = [
    ("mia", "Mia Berg", "mia.berg@crm.example.com", "salesperson", TEAM_NORTH, "Europe/Berlin"),
    (
        "noah",
        "Noah Fischer",
        "noah.fischer@crm.example.com",
        "salesperson",
        TEAM_NORTH,
        "America/New_York",
    ),
    (
        "priya",
        "Priya Shah",
        "priya.shah@crm.example.com",
        "salesperson",
        TEAM_SOUTH,
        "America/Los_Angeles",
    ),
    (
        "lena",
        "Lena Vogel",
        "lena.vogel@crm.example.com",
        "sales_manager",
        TEAM_NORTH,
        "Europe/Berlin",
    ),
    ("alex", "Alex Kim", "alex.kim@crm.example.com", "admin", None, "Europe/London"),
    ("jordan", "Jordan Lee", "jordan.lee@crm.example.com", "none", None, "America/Chicago"),
]

# (key, name, email, phone, (street, city, postal code, region, country), owner)
ACCOUNTS = [
    (
        "hudson",
        "Hudson Freight",
        "info@hudson-freight.example.com",
        "+1 212 555 0100",
        ("350 Fifth Avenue", "New York", "10118", "NY", "US"),
        "noah",
    ),
    (
        "lakeshore",
        "Lakeshore Foods",
        "hello@lakeshore.example.com",
        "+1 312 555 0142",
        ("233 S Wacker Dr", "Chicago", "60606", "IL", "US"),
        "noah",
    ),
    (
        "summit",
        "Summit Outdoor Gear",
        "sales@summit-gear.example.org",
        "+1 303 555 0187",
        ("1701 Wynkoop St", "Denver", "80202", "CO", "US"),
        "priya",
    ),
    (
        "pacific",
        "Pacific Studios",
        "contact@pacific-studios.example.com",
        "+1 213 555 0119",
        ("200 N Spring St", "Los Angeles", "90012", "CA", "US"),
        "priya",
    ),
    (
        "isar",
        "Isar Maschinenbau GmbH",
        "kontakt@isar-maschinenbau.example.de",
        "+49 89 5550 1200",
        ("Marienplatz 8", "München", "80331", "Bayern", "DE"),
        "mia",
    ),
    (
        "spree",
        "Spree Logistik AG",
        "info@spree-logistik.example.de",
        "+49 30 5550 7788",
        ("Friedrichstraße 43", "Berlin", "10117", "Berlin", "DE"),
        "mia",
    ),
    (
        "thames",
        "Thames Analytics Ltd",
        "hello@thames-analytics.example.co.uk",
        "+44 20 7946 0321",
        ("1 Canada Square", "London", "E14 5AB", "", "GB"),
        "lena",
    ),
    (
        "lumiere",
        "Lumière Cosmétiques SA",
        "bonjour@lumiere.example.fr",
        "+33 1 55 50 12 34",
        ("12 Rue de Rivoli", "Paris", "75004", "Île-de-France", "FR"),
        "mia",
    ),
    (
        "sakura",
        "Sakura Robotics KK",
        "info@sakura-robotics.example.jp",
        "+81 3 5550 4411",
        ("1-1 Marunouchi", "Tokyo", "100-0005", "Tokyo", "JP"),
        "noah",
    ),
    (
        "harbour",
        "Harbour Bridge Consulting",
        "team@harbour-bridge.example.com.au",
        "+61 2 5550 9090",
        ("1 Macquarie St", "Sydney", "2000", "NSW", "AU"),
        "lena",
    ),
    (
        "ipanema",
        "Ipanema Energia Ltda",
        "contato@ipanema-energia.example.com.br",
        "+55 11 5550 2020",
        ("Avenida Paulista 1578", "São Paulo", "01310-200", "SP", "BR"),
        "priya",
    ),
    (
        "ganga",
        "Ganga Software Pvt Ltd",
        "hello@ganga-software.example.in",
        "+91 80 5550 3030",
        ("80 MG Road", "Bengaluru", "560001", "Karnataka", "IN"),
        "mia",
    ),
]

# (key, first, last, email, phone, job title, account, address or None, follow, language, owner)
CONTACTS: list[
    tuple[str, str, str, str, str | None, str, str, Address | None, str, str | None, str]
] = [
    (
        "ada",
        "Ada",
        "Lovelace",
        "ada.lovelace@hudson-freight.example.com",
        "+1 212 555 0101",
        "Head of Operations",
        "hudson",
        ("350 Fifth Avenue", "New York", "10118", "NY", "US"),
        "allow",
        "en",
        "noah",
    ),
    (
        "grace",
        "Grace",
        "Hopper",
        "grace.hopper@lakeshore.example.com",
        "+1 312 555 0143",
        "CTO",
        "lakeshore",
        ("233 S Wacker Dr", "Chicago", "60606", "IL", "US"),
        "allow",
        "en",
        "noah",
    ),
    (
        "dorothy",
        "Dorothy",
        "Vaughan",
        "dorothy.vaughan@lakeshore.example.com",
        "+1 312 555 0144",
        "Purchasing Manager",
        "lakeshore",
        ("233 S Wacker Dr", "Chicago", "60606", "IL", "US"),
        "do_not_allow",
        "en",
        "mia",
    ),
    (
        "katherine",
        "Katherine",
        "Johnson",
        "katherine.johnson@summit-gear.example.org",
        "+1 303 555 0188",
        "Buyer",
        "summit",
        ("1701 Wynkoop St", "Denver", "80202", "CO", "US"),
        "allow",
        "en",
        "priya",
    ),
    (
        "hedy",
        "Hedy",
        "Lamarr",
        "hedy.lamarr@pacific-studios.example.com",
        "+1 213 555 0120",
        "Producer",
        "pacific",
        ("200 N Spring St", "Los Angeles", "90012", "CA", "US"),
        "allow",
        "en",
        "priya",
    ),
    (
        "juergen",
        "Jürgen",
        "Müller",
        "j.mueller@isar-maschinenbau.example.de",
        "+49 89 5550 1201",
        "Einkaufsleiter",
        "isar",
        ("Marienplatz 8", "München", "80331", "Bayern", "DE"),
        "allow",
        "de",
        "mia",
    ),
    (
        "sabine",
        "Sabine",
        "Schröder",
        "s.schroeder@isar-maschinenbau.example.de",
        "+49 89 5550 1202",
        "Geschäftsführerin",
        "isar",
        ("Marienplatz 8", "München", "80331", "Bayern", "DE"),
        "do_not_allow",
        "de",
        "mia",
    ),
    (
        "karl",
        "Karl",
        "Weiß",
        "karl.weiss@spree-logistik.example.de",
        "+49 30 5550 7789",
        "Leiter IT",
        "spree",
        ("Friedrichstraße 43", "Berlin", "10117", "Berlin", "DE"),
        "allow",
        "de",
        "lena",
    ),
    (
        "alan",
        "Alan",
        "Turing",
        "alan.turing@thames-analytics.example.co.uk",
        "+44 20 7946 0322",
        "Chief Scientist",
        "thames",
        ("1 Canada Square", "London", "E14 5AB", "", "GB"),
        "allow",
        "en",
        "lena",
    ),
    (
        "marie",
        "Marie",
        "Curie",
        "marie.curie@lumiere.example.fr",
        "+33 1 55 50 12 35",
        "Directrice R&D",
        "lumiere",
        ("12 Rue de Rivoli", "Paris", "75004", "Île-de-France", "FR"),
        "allow",
        "fr",
        "mia",
    ),
    (
        "emile",
        "Émile",
        "Durand",
        "emile.durand@lumiere.example.fr",
        "+33 1 55 50 12 36",
        "Acheteur",
        "lumiere",
        ("12 Rue de Rivoli", "Paris", "75004", "Île-de-France", "FR"),
        "do_not_allow",
        "fr",
        "mia",
    ),
    (
        "yuki",
        "Yuki",
        "Tanaka",
        "yuki.tanaka@sakura-robotics.example.jp",
        "+81 3 5550 4412",
        "Engineering Manager",
        "sakura",
        ("1-1 Marunouchi", "Tokyo", "100-0005", "Tokyo", "JP"),
        "allow",
        "ja",
        "noah",
    ),
    (
        "olivia",
        "Olivia",
        "Nguyen",
        "olivia.nguyen@harbour-bridge.example.com.au",
        "+61 2 5550 9091",
        "Partner",
        "harbour",
        ("1 Macquarie St", "Sydney", "2000", "NSW", "AU"),
        "allow",
        "en",
        "lena",
    ),
    (
        "lucas",
        "Lucas",
        "Oliveira",
        "lucas.oliveira@ipanema-energia.example.com.br",
        "+55 11 5550 2021",
        "Diretor Comercial",
        "ipanema",
        ("Avenida Paulista 1578", "São Paulo", "01310-200", "SP", "BR"),
        "allow",
        "pt",
        "priya",
    ),
    (
        "ananya",
        "Ananya",
        "Iyer",
        "ananya.iyer@ganga-software.example.in",
        "+91 80 5550 3031",
        "VP Engineering",
        "ganga",
        ("80 MG Road", "Bengaluru", "560001", "Karnataka", "IN"),
        "allow",
        "en",
        "mia",
    ),
    (
        # No postal address: Send later has no recommendation for her (SPEC S20).
        "rosalind",
        "Rosalind",
        "Franklin",
        "rosalind.franklin@thames-analytics.example.co.uk",
        None,
        "Data Lead",
        "thames",
        None,
        "allow",
        "en",
        "lena",
    ),
]

# (key, first, last, email, phone, company, address or None, follow, language, owner)
LEADS: list[tuple[str, str, str, str, str | None, str, Address | None, str, str | None, str]] = [
    (
        "tim",
        "Tim",
        "Berners-Lee",
        "tim@webworks.example.org",
        "+44 20 7946 0400",
        "Webworks",
        ("10 Downing Street", "London", "SW1A 2AA", "", "GB"),
        "allow",
        "en",
        "lena",
    ),
    (
        "margaret",
        "Margaret",
        "Hamilton",
        "margaret@apollo-code.example.com",
        "+1 617 555 0111",
        "Apollo Code",
        ("1 Broadway", "Cambridge", "02142", "MA", "US"),
        "allow",
        "en",
        "noah",
    ),
    (
        "barbara",
        "Barbara",
        "Liskov",
        "barbara@substitution.example.com",
        "+1 720 555 0133",
        "Substitution Inc",
        ("1600 Glenarm Pl", "Denver", "80202", "CO", "US"),
        "do_not_allow",
        "en",
        "priya",
    ),
    (
        "konrad",
        "Konrad",
        "Zuse",
        "konrad.zuse@rechenwerk.example.de",
        "+49 221 5550 4545",
        "Rechenwerk GmbH",
        ("Domkloster 4", "Köln", "50667", "Nordrhein-Westfalen", "DE"),
        "allow",
        "de",
        "mia",
    ),
    (
        "chloe",
        "Chloé",
        "Lefèvre",
        "chloe.lefevre@atelier.example.fr",
        None,
        "Atelier Lefèvre",
        ("5 Quai Saint-Antoine", "Lyon", "69002", "Auvergne-Rhône-Alpes", "FR"),
        "allow",
        "fr",
        "mia",
    ),
    (
        "kenji",
        "Kenji",
        "Sato",
        "kenji.sato@osaka-devices.example.jp",
        "+81 6 5550 7878",
        "Osaka Devices",
        ("2-1 Umeda", "Osaka", "530-0001", "Osaka", "JP"),
        "allow",
        "ja",
        "noah",
    ),
    (
        "isabela",
        "Isabela",
        "Costa",
        "isabela.costa@rio-verde.example.com.br",
        "+55 21 5550 6060",
        "Rio Verde Agro",
        ("Avenida Atlântica 1702", "Rio de Janeiro", "22021-001", "RJ", "BR"),
        "allow",
        "pt",
        "priya",
    ),
    (
        "jack",
        "Jack",
        "Wilson",
        "jack.wilson@outback-solar.example.com.au",
        "+61 3 5550 8181",
        "Outback Solar",
        ("120 Collins St", "Melbourne", "3000", "VIC", "AU"),
        "allow",
        "en",
        "lena",
    ),
    (
        # Found by a search for the company only; no address yet.
        "sam",
        "Sam",
        "Rivera",
        "sam.rivera@example.net",
        None,
        "Rivera Ventures",
        None,
        "allow",
        None,
        "noah",
    ),
]

# (name, account, primary contact, amount, currency, stage, won, owner)
OPPORTUNITIES = [
    ("Hudson Freight fleet telematics", "hudson", "ada", "120000", "USD", "propose", False, "noah"),
    ("Lakeshore cold-chain sensors", "lakeshore", "grace", "48000", "USD", "close", True, "noah"),
    ("Summit store rollout", "summit", "katherine", "36500", "USD", "develop", False, "priya"),
    ("Pacific Studios render farm", "pacific", "hedy", "210000", "USD", "close", True, "priya"),
    ("Isar Wartungsvertrag 2025", "isar", "juergen", "85000", "EUR", "propose", False, "mia"),
    ("Spree Lagerautomatisierung", "spree", "karl", "142000", "EUR", "close", True, "lena"),
    ("Thames analytics platform", "thames", "alan", "64000", "GBP", "qualify", False, "lena"),
    ("Lumière packaging line", "lumiere", "marie", "57000", "EUR", "develop", False, "mia"),
    ("Sakura pilot cell", "sakura", "yuki", "9800000", "JPY", "close", True, "noah"),
    ("Ipanema grid monitoring", "ipanema", "lucas", "310000", "BRL", "qualify", False, "priya"),
    ("Ganga developer licences", "ganga", "ananya", "2400000", "INR", "propose", False, "mia"),
]

# (name, language, category, subject, HTML body as the rich editor writes it), by Lena Vogel,
# the sales manager. ``regarding.name`` is the opportunity (or other record) an email is about.
TEMPLATES = [
    (
        "Introduction after a first call",
        "en",
        "Introduction",
        'Good to meet you, {{ recipient.first_name | default("there") }}',
        '<div>Hello {{ recipient.first_name | default("there") }},<br><br>'
        "thank you for taking the time to talk with me. As promised, here is a short summary "
        "of how we can help with {{ regarding.name }}.<br><br>"
        "Would a 30-minute call next week suit you to go through the details?<br><br>"
        "Best regards</div>",
    ),
    (
        "Follow-up on a proposal",
        "en",
        "Follow-up",
        "Your proposal for {{ regarding.name }}",
        '<div>Hi {{ recipient.first_name | default("there") }},<br><br>'
        "I wanted to check whether you had a chance to look at our proposal for "
        "{{ regarding.name }}. If questions came up, I am happy to answer them or to adjust "
        "the scope.<br><br>Kind regards</div>",
    ),
    (
        "Vorstellung nach dem Erstgespräch",
        "de",
        "Vorstellung",
        "Unser Gespräch zu {{ regarding.name }}",
        '<div>Hallo {{ recipient.first_name | default("zusammen") }},<br><br>'
        "vielen Dank für das angenehme Gespräch. Wie versprochen schicke ich Ihnen eine kurze "
        "Übersicht, wie wir Sie bei {{ regarding.name }} unterstützen können.<br><br>"
        "Passt Ihnen nächste Woche ein Termin von 30 Minuten, um die Einzelheiten zu "
        "besprechen?<br><br>Viele Grüße</div>",
    ),
]

#: The demo user who wrote the templates: the sales manager.
TEMPLATE_AUTHOR = "lena"


def _address(parts: Address | None) -> dict[str, str]:
    street, city, postal_code, region, country = parts or ("", "", "", "", "")
    return {
        "street": street,
        "city": city,
        "postal_code": postal_code,
        "region": region,
        "country": country,
    }


def is_seeded() -> bool:
    """Whether the demo database already holds users (then it is left as it is)."""
    return bool(db.session.scalar(sa.select(sa.func.count()).select_from(User)))


def seed() -> None:
    """Fill an empty demo database with the users and records above, and commit.

    Call inside an application context. A database that already has users is left alone, so
    the edits made while trying the demo survive a restart; it only gets the email templates
    if engage has none (a demo database from before templates existed).
    """
    if is_seeded():
        seed_templates()
        return
    users = {
        key: User(name=name, email=email, role=role, team=team, timezone=timezone)
        for key, name, email, role, team, timezone in USERS
    }
    accounts = {
        key: Account(name=name, email=email, phone=phone, owner=users[owner], **_address(address))
        for key, name, email, phone, address, owner in ACCOUNTS
    }
    contacts = {row[0]: _contact(row, users, accounts) for row in CONTACTS}
    leads = [_lead(row, users) for row in LEADS]
    opportunities = [
        Opportunity(
            name=name,
            account=accounts[account],
            primary_contact=contacts[contact],
            amount=Decimal(amount),
            currency=currency,
            stage=stage,
            won=won,
            owner=users[owner],
        )
        for name, account, contact, amount, currency, stage, won, owner in OPPORTUNITIES
    ]
    for group in (users.values(), accounts.values(), contacts.values(), leads, opportunities):
        db.session.add_all(group)
    db.session.commit()
    seed_templates()


def seed_templates() -> None:
    """Add the email templates above when engage has none yet, and commit.

    A retired template still counts, so templates the team retired do not come back.
    """
    if db.session.scalar(sa.select(sa.func.count()).select_from(EmailTemplate)):
        return
    author = db.session.scalars(
        sa.select(User).where(User.email == _user_email(TEMPLATE_AUTHOR))
    ).first()
    if author is None:
        return
    db.session.add_all(
        EmailTemplate(
            name=name,
            language=language,
            category=category,
            subject=subject,
            html_body=body,
            text_body=html_to_text(body),
            created_by=str(author.id),
            updated_by=str(author.id),
        )
        for name, language, category, subject, body in TEMPLATES
    )
    db.session.commit()


def _user_email(key: str) -> str:
    return next(email for k, _name, email, *_rest in USERS if k == key)


def _contact(
    row: tuple[str, str, str, str, str | None, str, str, Address | None, str, str | None, str],
    users: dict[str, User],
    accounts: dict[str, Account],
) -> Contact:
    _key, first, last, email, phone, title, account, address, follow, language, owner = row
    return Contact(
        first_name=first,
        last_name=last,
        email=email,
        phone=phone,
        job_title=title,
        account=accounts[account],
        follow_preference=follow,
        language=language,
        owner=users[owner],
        **_address(address),
    )


def _lead(
    row: tuple[str, str, str, str, str | None, str, Address | None, str, str | None, str],
    users: dict[str, User],
) -> Lead:
    _key, first, last, email, phone, company, address, follow, language, owner = row
    return Lead(
        first_name=first,
        last_name=last,
        email=email,
        phone=phone,
        company=company,
        follow_preference=follow,
        language=language,
        owner=users[owner],
        **_address(address),
    )
