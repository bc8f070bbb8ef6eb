"""Keep secret values out of logs that third-party libraries write.

botocore logs request parameters and response bodies at DEBUG level; for
Secrets Manager those hold the Alpaca keys. Anyone turning on DEBUG logging to
chase a problem must not leak them, so records that carry a secret value are
redacted at the loggers that write them.
"""

from __future__ import annotations

import logging

SECRET_MARKERS = ("SecretString", "SecretBinary")
BOTOCORE_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.hooks", "botocore.auth")


class SecretRedactionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format is dropped rather than risked
            return False
        if any(marker in text for marker in SECRET_MARKERS):
            record.msg, record.args = "[redacted: a Secrets Manager payload]", ()
        return True


_filter = SecretRedactionFilter()


def install() -> None:
    """Idempotent: attach the filter to every botocore logger that can print a secret."""
    for name in BOTOCORE_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
