"""Log lines a machine can read: one JSON object per line, through the standard logging set-up.

`JsonLineFormatter` (python-json-logger) writes `time`, `level`, `logger`, `message`, the request id
of the request being served (`config.request_context`) and every field passed with `extra=`, so any
module logs structured fields without a formatter of its own:

    logging.getLogger("pay10.backfill").info("batch %s done", 3, extra={"batch": 3, "invoices": 1000})
    -> {"level": "INFO", "logger": "pay10.backfill", "message": "batch 3 done", "batch": 3,
        "invoices": 1000, "time": "2026-12-05T05:48:33.240900+00:00"}

Settings use it on stderr unless stderr is a terminal (`DJANGO_LOG_FORMAT`); `config/gunicorn.py`
uses it, and `GunicornAccessJsonFormatter`, for gunicorn's own lines.
"""
import os
import sys

from pythonjsonlogger.json import JsonFormatter

from config.request_context import current_request_id

LOG_FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# gunicorn's access-log atoms (docs: settings, access_log_format) and the field each becomes.
GUNICORN_ACCESS_FIELDS = {
    "h": "remote",
    "m": "method",
    "U": "path",
    "q": "query",
    "s": "status",
    "B": "bytes",
    "M": "duration_ms",
    "a": "user_agent",
    "{x-request-id}o": "request_id",
}
GUNICORN_NUMBER_FIELDS = {"status", "bytes", "duration_ms"}


def log_format() -> str:
    """`DJANGO_LOG_FORMAT` (json or text), else text on a terminal and JSON lines otherwise."""
    chosen = os.environ.get("DJANGO_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    if chosen not in LOG_FORMATS:
        raise ValueError(f"DJANGO_LOG_FORMAT must be json or text, not {chosen!r}")
    return chosen


class JsonLineFormatter(JsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__("{levelname}{name}{message}", *args, style="{", **kwargs)

    def add_fields(self, log_record: dict, record, message_dict: dict) -> None:
        super().add_fields(log_record, record, message_dict)
        request_id = current_request_id()
        if request_id is not None:
            log_record.setdefault("request_id", request_id)


class GunicornAccessJsonFormatter(JsonLineFormatter):
    """gunicorn's access line as fields (it passes its atoms as the record's arguments)."""

    def add_fields(self, log_record: dict, record, message_dict: dict) -> None:
        super().add_fields(log_record, record, message_dict)
        atoms = record.args if isinstance(record.args, dict) else {}
        for atom, field in GUNICORN_ACCESS_FIELDS.items():
            value = atoms.get(atom, "-")
            if value != "-":
                log_record[field] = int(value) if field in GUNICORN_NUMBER_FIELDS else value
