"""Structured JSON logs: one line per event, with policy, namespace and run id when known."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

_FIELDS = ("policy", "namespace", "run_id", "phase", "step", "weight", "source", "error", "stall")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; extra fields named in ``_FIELDS`` are carried over."""

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, stream: TextIO | None = None) -> None:
    """JSON logs on ``stream`` (stderr by default) at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel("WARNING")
    logging.getLogger("kubernetes").setLevel("WARNING")
    logging.getLogger("urllib3").setLevel("ERROR")
    logging.getLogger("httpx").setLevel("WARNING")  # its INFO lines carry request URLs (webhook URLs are secrets)
