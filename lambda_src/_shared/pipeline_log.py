"""Structured JSON logging for the pipeline's handlers: every line carries the execution id.

Lambda's JSON log format (``logging_config``) already wraps records; we add ``execution_id`` and
``function`` so one CloudWatch Logs Insights query can follow an execution across services.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "message": record.getMessage(),
            "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", record.name),
            "execution_id": getattr(record, "execution_id", None),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


class PipelineLogger(logging.LoggerAdapter):
    """``log.info("msg", count=3)``: keyword fields land in the JSON line."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k not in {"exc_info", "stack_info", "stacklevel", "extra"}}
        kwargs["extra"] = {"execution_id": self.extra["execution_id"], "fields": fields}
        return msg, kwargs


def get_logger(name: str, execution_id: str | None) -> PipelineLogger:
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, _JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_JsonFormatter())
        logger.handlers[:] = [handler]
        logger.propagate = False
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    return PipelineLogger(logger, {"execution_id": execution_id})


def execution_id_of(event: Any) -> str | None:
    """The workflow passes ``execution_id``; SNS and EventBridge events carry their own ids."""
    if isinstance(event, dict):
        return event.get("execution_id") or event.get("id")
    return None


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.monotonic()
        return self

    def __exit__(self, *_: Any) -> None:
        self.seconds = round(time.monotonic() - self.started, 3)


def emf(namespace: str, dimensions: dict[str, str], figures: dict[str, float], now_ms: int) -> dict:
    """One CloudWatch Embedded Metric Format record: ``figures`` as metrics under ``dimensions``.
    Printed as one line on a function's stdout, CloudWatch Logs extracts the metrics (no
    cloudwatch:PutMetricData needed). Names ending in ``Seconds`` are seconds, the rest counts."""
    return {
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": "Seconds" if name.endswith("Seconds") else "Count"} for name in figures
                    ],
                }
            ],
        },
        **dimensions,
        **figures,
    }
