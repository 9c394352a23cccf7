"""The Batch stage container contract, shared by every stage image (see images/README.md).

A stage is started by Batch as ``python -m stage <manifest_uri> <execution_id> <shard>``. It
reads its inputs from the data lake, writes its outputs under
``s3://$PROCESSED_BUCKET/<stage>/<execution_id>/`` and, last, a completion marker
``_SUCCESS.<shard>.json`` there. Exit codes tell Batch what to do next.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

EXIT_OK = 0
EXIT_GIVE_UP = 64  # bad input: retrying cannot help (EX_USAGE)
EXIT_RETRY = 75  # transient failure: the job definition retries this code (EX_TEMPFAIL)


class StageInputError(Exception):
    """The input is wrong (missing manifest, malformed record): give up, do not retry."""


class StageTransientError(Exception):
    """A dependency failed transiently (throttling, timeout): let Batch retry."""


@dataclass(frozen=True)
class StageContext:
    stage: str
    environment: str
    manifest_uri: str
    execution_id: str
    shard: int
    raw_bucket: str
    processed_bucket: str
    curated_bucket: str
    output_prefix: str  # "<stage>/<execution_id>/"

    def output_key(self, name: str) -> str:
        return f"{self.output_prefix}{name}"

    @property
    def marker_key(self) -> str:
        return self.output_key(f"_SUCCESS.{self.shard}.json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, always carrying the execution id for cross-service queries."""

    def __init__(self, static: dict[str, Any]) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "message": record.getMessage(),
            **self.static,
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


def parse_context(argv: list[str], env: dict[str, str]) -> StageContext:
    if len(argv) != 3:
        raise StageInputError(f"expected <manifest_uri> <execution_id> <shard>, got {len(argv)} argument(s)")
    manifest_uri, execution_id, shard = argv
    if not manifest_uri.startswith("s3://"):
        raise StageInputError(f"manifest uri {manifest_uri!r} must start with s3://")
    if not shard.isdigit():
        raise StageInputError(f"shard {shard!r} must be a non-negative integer")
    missing = [k for k in ("STAGE", "PROCESSED_BUCKET", "RAW_BUCKET", "CURATED_BUCKET") if not env.get(k)]
    if missing:
        raise StageInputError(f"environment lacks {', '.join(missing)}")
    stage = env["STAGE"]
    return StageContext(
        stage=stage,
        environment=env.get("PIPELINE_ENV", "unknown"),
        manifest_uri=manifest_uri,
        execution_id=execution_id,
        shard=int(shard),
        raw_bucket=env["RAW_BUCKET"],
        processed_bucket=env["PROCESSED_BUCKET"],
        curated_bucket=env["CURATED_BUCKET"],
        output_prefix=f"{stage}/{execution_id}/",
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise StageInputError(f"{uri!r} is not an s3://bucket/key uri")
    return bucket, key


def read_json(s3: Any, bucket: str, key: str) -> Any:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise StageInputError(f"s3://{bucket}/{key} does not exist") from exc
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise StageInputError(f"s3://{bucket}/{key} is not JSON: {exc}") from exc


def write_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    """Deterministic JSON (sorted keys), so a retried job writes byte-identical objects."""
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(value, sort_keys=True).encode(), ContentType="application/json"
    )


def run(
    process: Callable[[StageContext, Any, logging.Logger], dict[str, Any]],
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    s3: Any = None,
) -> int:
    """Run one stage: parse the contract, call ``process``, write the marker, map errors to exit codes."""
    env = dict(os.environ) if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    log = logging.getLogger("stage")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            {
                "stage": env.get("STAGE"),
                "execution_id": argv[1] if len(argv) > 1 else None,
                "env": env.get("PIPELINE_ENV"),
            }
        )
    )
    log.handlers[:] = [handler]
    log.setLevel(env.get("LOG_LEVEL", "INFO"))
    started = time.monotonic()
    try:
        ctx = parse_context(argv, env)
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        summary = process(ctx, s3, log)
        write_json(
            s3,
            ctx.processed_bucket,
            ctx.marker_key,
            {
                "stage": ctx.stage,
                "execution_id": ctx.execution_id,
                "shard": ctx.shard,
                **summary,
            },
        )
    except StageInputError as exc:
        log.error("giving up: %s", exc, extra={"fields": {"exit_code": EXIT_GIVE_UP}})
        return EXIT_GIVE_UP
    except StageTransientError as exc:
        log.warning("transient failure, Batch will retry: %s", exc, extra={"fields": {"exit_code": EXIT_RETRY}})
        return EXIT_RETRY
    log.info("done", extra={"fields": {"seconds": round(time.monotonic() - started, 3), **summary}})
    return EXIT_OK


def read_shard(s3: Any, ctx: StageContext, input_stage: str) -> list[dict]:
    """The records of this job's shard, as the previous stage wrote them."""
    key = f"{input_stage}/{ctx.execution_id}/shard-{ctx.shard}.json"
    shard = read_json(s3, ctx.processed_bucket, key)
    if not isinstance(shard, dict) or not isinstance(shard.get("records"), list):
        raise StageInputError(f"s3://{ctx.processed_bucket}/{key} has no 'records' list")
    return shard["records"]


def read_image(s3: Any, bucket: str, key: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise StageInputError(f"image s3://{bucket}/{key} vanished since stage0") from exc


@dataclass(frozen=True)
class Feed:
    """How a stage keeps its model busy: threads that read and decode, how many loaded items may
    wait (the prefetch depth), and the inference batch size.

    Sized from the job definition (``STAGE_VCPUS``, ``STAGE_MEMORY_MIB``, ``INFERENCE_BATCH_SIZE``):
    two threads per vCPU, as a thread waits on S3 about as long as it decodes; at most a quarter of
    the job's memory for waiting items, and never more than four batches ahead, so memory stays
    bounded however large the shard."""

    workers: int
    depth: int
    batch_size: int

    @classmethod
    def from_env(cls, env: dict[str, str], item_bytes: int) -> Feed:
        def number(name: str, default: int) -> int:
            value = env.get(name) or str(default)
            if not value.isdigit() or int(value) < 1:
                raise StageInputError(f"{name}={value!r} must be a positive whole number (job definition)")
            return int(value)

        vcpus = number("STAGE_VCPUS", os.cpu_count() or 1)
        memory_bytes = number("STAGE_MEMORY_MIB", 2048) * 2**20
        batch = number("INFERENCE_BATCH_SIZE", 1)
        workers = 2 * vcpus
        depth = max(batch, min(memory_bytes // 4 // max(item_bytes, 1), 4 * batch + workers))
        return cls(workers=workers, depth=depth, batch_size=batch)


def prefetch(items: Iterable[T], load: Callable[[T], R], *, workers: int, depth: int) -> Iterator[tuple[T, R]]:
    """``(item, load(item))`` in the items' order, loaded on ``workers`` threads, never more than
    ``depth`` loaded or loading at once (the one the consumer holds included). A load's exception
    is raised in order."""
    source = iter(items)
    pending: deque = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch", initializer=_yield_to_model)
    try:
        for item in islice(source, depth):
            pending.append((item, pool.submit(load, item)))
        while pending:
            item, future = pending.popleft()
            yield item, future.result()
            # Refilled only when the consumer asks for more: the item it held counts against depth.
            for following in islice(source, 1):
                pending.append((following, pool.submit(load, following)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _yield_to_model() -> None:
    """Loader threads run at a lower priority (Linux: per thread): where the model computes on the
    same CPUs (the CPU provider), its threads never wait behind a decoder; on a GPU host it changes
    nothing, as the model's thread mostly waits for the device."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to ``size`` consecutive items (itertools.batched is Python 3.12+)."""
    source = iter(items)
    while chunk := list(islice(source, size)):
        yield chunk
