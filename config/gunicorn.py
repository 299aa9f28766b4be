"""gunicorn's settings for pay10: `gunicorn -c config/gunicorn.py config.wsgi` (docs/deploy.md).

Where to listen is the command line's (`--bind 127.0.0.1:8000`, or a unix socket); everything here
can be overridden there or with GUNICORN_CMD_ARGS. Logs: the access log (one line per request, with
its request id) on stdout, gunicorn's own messages on stderr, JSON lines unless stderr is a terminal,
like the application's (config/logs.py).
"""
import multiprocessing
import os

from config.logs import TEXT_FORMAT, log_format

wsgi_app = "config.wsgi:application"

# Sync workers, each with its own database connection: 2 x cores + 1 unless WEB_CONCURRENCY says.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# A request still running after this many seconds is killed (its transaction rolls back); the API's
# requests take milliseconds, the long jobs (backfill, rebuild) run as commands, never as requests.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 30  # on SIGTERM, requests in flight get this long to finish
keepalive = 5  # behind a proxy that reuses connections
# Recycle each worker after about a thousand requests, staggered, to bound its memory.
max_requests = 1000
max_requests_jitter = 100

# No control socket (gunicorn 25+): it is one per user by default, and several gunicorns run on one
# machine (tests, `make serve`); signals and the service manager control this one.
control_socket_disable = True

accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'
_format = log_format()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "config.logs.JsonLineFormatter"},
        "access_json": {"()": "config.logs.GunicornAccessJsonFormatter"},
        "text": {"format": TEXT_FORMAT},
    },
    "handlers": {
        "access": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                   "formatter": "access_json" if _format == "json" else "text"},
        "error": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": _format},
    },
    "root": {"level": "WARNING", "handlers": ["error"]},
    "loggers": {
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
    },
}
