"""The pipeline's structured logs: a readable sentence for people, real fields for machines.

Every `signal9.*` logger writes a sentence ("Alpaca GET /v2/assets: 200 in 472.9 ms") with its
facts as record attributes (`extra=`): Dagster's event log and console show the sentence
(dagster.yaml manages the `signal9` logger), and with `SIGNAL9_LOG_FORMAT=json` (production)
one JSON object per record goes to stdout through python-json-logger, every fact a top-level
field, so CloudWatch Logs Insights filters on them (`filter event = "alpaca_request" and
status >= 500`; RUNBOOK.md has the queries).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from signal9_pipeline import settings

ROOT = "signal9"
_handler: logging.Handler | None = None


def json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    return handler


def install() -> None:
    """Idempotent: JSON lines on stdout for every `signal9.*` logger when SIGNAL9_LOG_FORMAT=json."""
    global _handler
    logger = logging.getLogger(ROOT)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if (settings.get("SIGNAL9_LOG_FORMAT") or "").lower() == "json" and _handler is None:
        _handler = json_handler()
        logger.addHandler(_handler)


def event(logger: logging.Logger, level: int, sentence: str, name: str, **fields: Any) -> None:
    """Log `sentence`, carrying `event=name` and `fields` as attributes of the record."""
    logger.log(level, sentence, extra={"event": name, **fields})


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured facts of a record written by `event` (empty for any other record)."""
    standard = logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
    return {k: v for k, v in record.__dict__.items() if k not in standard} if hasattr(record, "event") else {}
