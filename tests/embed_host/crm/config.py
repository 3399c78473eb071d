import os


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", "change-me")
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", "sqlite:///crm.sqlite3")
    SESSION_COOKIE_SAMESITE = "Lax"
    ENGAGE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ENGAGE_SMTP_URL = os.environ.get("SMTP_URL", "smtp://127.0.0.1:25")
    ENGAGE_PUBLIC_URL = os.environ.get("PUBLIC_URL")
