"""pay10 settings, read from the environment (django-environ, cookiecutter-django names).

DATABASE_URL defaults to a SQLite file in the project root; production and CI point it at
PostgreSQL. DEBUG is off unless DJANGO_DEBUG says otherwise, and DJANGO_SECRET_KEY has no default
then, so a deployment without one fails loudly at start-up. Nothing in the checkout turns DEBUG on:
the make targets pass DJANGO_DEBUG=true to their own commands, and a `.env` file is read only when
DJANGO_READ_DOT_ENV_FILE=true is set in the environment. docs/deploy.md lists every variable.
"""
from datetime import date, timedelta
from pathlib import Path

import environ

from config import logs

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-development-key-do-not-deploy")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers wait for each other instead of failing with "database is locked": every
    # transaction takes the write lock when it begins (a deferred one that read first could not
    # wait for it), waits up to 30 s for it, and WAL lets readers go on meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        transaction_mode="IMMEDIATE",
        timeout=30,
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
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
    "axes",
    "billing",
    "payments",
]

MIDDLEWARE = [
    "config.request_context.RequestContextMiddleware",
    "config.request_log.RequestLogMiddleware",
    "config.api.ApiEdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: refuses a locked-out admin login before the view runs.
    "axes.middleware.AxesMiddleware",
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
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Admin logins: django-axes locks a username at one address out after AXES_FAILURE_LIMIT failures
# in a row, for AXES_COOLOFF_MINUTES (a success before that resets the count).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# Bounded input (docs/api.md "Limits"): request bodies, and what a recorded payment may say.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_MAX_BODY_BYTES", default=256 * 1024)
PAY10_MAX_PAYMENT_CENTS = env.int("PAY10_MAX_PAYMENT_CENTS", default=10**12)
PAY10_RECEIVED_AT_MAX_SKEW_SECONDS = env.int("PAY10_RECEIVED_AT_MAX_SKEW_SECONDS", default=300)
PAY10_RECEIVED_AT_FLOOR = date.fromisoformat(env("PAY10_RECEIVED_AT_FLOOR", default="2000-01-01"))

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

# The backfill console's bounds (docs/runbook.md, "Watching and steering a running backfill");
# `pay10_backfill`'s options override them.
PAY10_BACKFILL = {
    "TARGET_BATCH_SECONDS": env.float("PAY10_BACKFILL_TARGET_BATCH_SECONDS", default=1.0),
    "MIN_BATCH_SIZE": env.int("PAY10_BACKFILL_MIN_BATCH_SIZE", default=100),
    "MAX_BATCH_SIZE": env.int("PAY10_BACKFILL_MAX_BATCH_SIZE", default=10_000),
    "MAX_REPLICATION_LAG_SECONDS": env.float("PAY10_BACKFILL_MAX_REPLICATION_LAG_SECONDS", default=30.0),
    "LONG_TRANSACTION_SECONDS": env.float("PAY10_BACKFILL_LONG_TRANSACTION_SECONDS", default=300.0),
    "MAX_LONG_TRANSACTIONS": env.int("PAY10_BACKFILL_MAX_LONG_TRANSACTIONS", default=0),
    "POLL_SECONDS": env.float("PAY10_BACKFILL_POLL_SECONDS", default=5.0),
    "PARITY_EVERY_BATCHES": env.int("PAY10_BACKFILL_PARITY_EVERY_BATCHES", default=50),
}

# Static files (the admin's CSS and JavaScript) are served by whitenoise from STATIC_ROOT, filled by
# `manage.py collectstatic` at deploy time; with DEBUG on it serves them from the apps directly.
STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# TLS is terminated by a proxy in front of gunicorn, which must set X-Forwarded-Proto (and overwrite
# one sent by a client). Whenever DEBUG is off the defaults are the safe ones (`check --deploy`
# clean); the variables are cookiecutter-django's names.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes of the load balancer may use plain HTTP
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = env.bool("DJANGO_SECURE_CONTENT_TYPE_NOSNIFF", default=True)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["config.api.ExpiringTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON bodies only (integers must be JSON integers); OPTIONS is not an operation (405).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_METADATA_CLASS": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    # Per token for authenticated callers, per address for anonymous ones (config.api).
    "DEFAULT_THROTTLE_CLASSES": ["config.api.TokenRateThrottle", "config.api.AddressRateThrottle"],
}
# Rates are "<count>/<second|minute|hour|day>"; read at each request (config.api).
API_THROTTLE_TOKEN_RATE = env("API_THROTTLE_TOKEN_RATE", default="600/minute")
API_THROTTLE_ANON_RATE = env("API_THROTTLE_ANON_RATE", default="60/minute")

REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=30)),
    "AUTO_REFRESH": False,
}
# Live tokens one user may hold; create_api_token refuses beyond it (revoke_api_tokens frees them).
API_TOKEN_LIMIT_PER_USER = env.int("API_TOKEN_LIMIT_PER_USER", default=5)

SPECTACULAR_SETTINGS = {
    "TITLE": "pay10 API",
    "DESCRIPTION": "Allocation-based payments and the finance read API (FIN-01, FIN-02).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is served to token holders only (config/urls.py), and documents every error answer.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.document_common_errors",
    ],
}

# Log lines on stderr: JSON lines (config.logs.JsonLineFormatter) unless stderr is a terminal;
# DJANGO_LOG_FORMAT=json|text chooses. `pay10.*` loggers (requests, refused payment operations,
# backfill batches) log at INFO; everything else from WARNING.
LOG_LEVEL = env("DJANGO_LOG_LEVEL", default="WARNING")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.logs.JsonLineFormatter"}, "text": {"format": logs.TEXT_FORMAT}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": logs.log_format()}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "pay10": {"level": env("PAY10_LOG_LEVEL", default="INFO")},
        # Django's own lines go to the same handler (not its DEBUG-only plain console); its 4xx
        # warnings repeat what the request line says, so only errors.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.request": {"level": "ERROR"},
    },
}
