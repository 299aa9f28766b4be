"""pay10 settings, read from the environment (django-environ, cookiecutter-django names).

DATABASE_URL defaults to a SQLite file in the project root; production and CI point it at
PostgreSQL. DJANGO_SECRET_KEY has no default unless DJANGO_DEBUG is on, so a production
deployment without one fails loudly at start-up. A `.env` file in the project root is read
if present (`make` writes one for local development).
"""
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-development-key-do-not-deploy")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers wait for each other instead of failing at once with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Lets several checkouts test against one PostgreSQL server at once without sharing a test
    # database (SQLite tests run in memory and never collide).
    DATABASES["default"]["TEST"] = {"NAME": env("DJANGO_TEST_DATABASE_NAME", default=None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "billing",
    "payments",
]

MIDDLEWARE = [
    "config.request_context.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
# "Today" for due dates and statuses is the date in this zone (SPEC: settings time zone).
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# FIN-01/FIN-02 read the invoice figures PostgreSQL keeps (payments.selectors.figures) when true;
# false makes them compute live from the allocations (same figures, slower at scale).
PAY10_READ_MODEL = env.bool("PAY10_READ_MODEL", default=True)
# Online migrations (payments/migrations/_operations.py): a step that locks an existing table waits
# at most this long per attempt (lock_timeout grows 100 ms, 200 ms, ... up to it), with growing
# pauses between attempts (up to PAUSE), this many attempts, then `migrate` stops with one line.
PAY10_MIGRATION_LOCK_TIMEOUT_MS = env.int("PAY10_MIGRATION_LOCK_TIMEOUT_MS", default=3000)
PAY10_MIGRATION_LOCK_ATTEMPTS = env.int("PAY10_MIGRATION_LOCK_ATTEMPTS", default=12)
PAY10_MIGRATION_LOCK_PAUSE_S = env.float("PAY10_MIGRATION_LOCK_PAUSE_S", default=5.0)

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["knox.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=30)),
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "pay10 API",
    "DESCRIPTION": "Allocation-based payments and the finance read API (FIN-01, FIN-02).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="WARNING")},
}
