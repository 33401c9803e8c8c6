"""Logging: the level, plain or JSON lines, one access line per request, and no secrets.

``spaceai serve --log-level info --log-json`` sets ``SPACEAI_LOG_LEVEL`` and
``SPACEAI_LOG_JSON`` so that every worker process configures itself the same way
(:func:`configure_from_env`, called by the application factory). Every record goes through
:class:`Redactor`, which blanks API keys (``sk-…``), bearer tokens and the configured secrets
(admin key, upstream keys) wherever they appear; the access line itself holds only the method,
the path without its query string, the status, the duration, the request id, the client and,
for a failed answer, why (the error's code and message). A 4xx or 5xx answer's line is a
warning, so the default level (warning) shows failing clients.
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import UTC, datetime

import orjson

ACCESS = logging.getLogger("spaceai.access")
LEVELS = ("critical", "error", "warning", "info", "debug")
_KEYS = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)\S+")
REDACTED = "[redacted]"
_MAX_ERROR = 300  # characters of an error message in an access line


class Redactor(logging.Filter):
    """Blanks secrets in a record's message (and its arguments) before any handler sees it."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets or [] if s and len(s) >= 6}, key=len,
                              reverse=True)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _KEYS.sub(lambda m: m.group(1) + "…" + REDACTED, text)
        return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string: keep what there is
                record.msg = str(record.msg)
            record.args = None
        record.msg = self.clean(str(record.msg))
        fields = getattr(record, "access", None)
        if fields:
            fields["path"] = self.clean(fields["path"])
            if "error" in fields:  # it may quote what the client sent
                fields["error"] = self.clean(fields["error"])
        if record.exc_info and not record.exc_text:
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the access fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        fields = getattr(record, "access", None)
        if fields:
            entry.update(fields)
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(level: str = "info", as_json: bool = False, secrets: list[str] | None = None) -> None:
    """Send every log record to stderr at ``level``, as text or JSON lines, secrets blanked."""
    handler = logging.StreamHandler()
    handler.addFilter(Redactor(secrets))
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # ours says more, and redacts; with no handler to reach, uvicorn does not even build
    # its line (a path quoted and a logger called on every request)
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True


def configure_from_env(secrets: list[str] | None = None) -> bool:
    """Configure from SPACEAI_LOG_LEVEL / SPACEAI_LOG_JSON if ``spaceai serve`` set them."""
    level = os.environ.get("SPACEAI_LOG_LEVEL")
    if not level:
        return False
    configure(level, os.environ.get("SPACEAI_LOG_JSON", "") == "1", secrets)
    return True


def access(method: str, path: str, status: int, started: float, request_id: str,
           client: tuple | None, error: str | None = None) -> None:
    """The access line of one request: info, or a warning saying why for a 4xx/5xx answer
    (``error``: the error's code and message, so an operator sees why a client fails, also
    when it has no ledger row, as an unknown or revoked key)."""
    duration = round((time.perf_counter() - started) * 1000, 3)
    ip = client[0] if client else None
    level = logging.WARNING if status >= 400 else logging.INFO
    fields = {"method": method, "path": path, "status": status, "duration_ms": duration,
              "request_id": request_id, "client": ip}
    if error is None:
        ACCESS.log(level, "%s %s %d %.1fms %s", method, path, status, duration, request_id,
                   extra={"access": fields})
        return
    fields["error"] = error = error[:_MAX_ERROR]
    ACCESS.log(level, "%s %s %d %.1fms %s %s", method, path, status, duration, request_id,
               error, extra={"access": fields})
