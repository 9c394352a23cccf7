"""An execution's shard files, read in order with the next few GETs already under way.

The steps after the fan-out read every shard of the execution one at a time (memory stays one
shard); at S3's tens of ms a GET, reading ahead hides that wait behind the work on the current one.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def read_shards(s3: Any, bucket: str, prefix: str, count: int, ahead: int = 3) -> Iterator[tuple[int, list[dict]]]:
    """``(n, records)`` of ``<prefix>/shard-<n>.json`` for n < count; a shard stage0 did not make
    (fewer shards than the maximum) is skipped."""

    def get(shard: int) -> bytes | None:
        try:
            return s3.get_object(Bucket=bucket, Key=f"{prefix}/shard-{shard}.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    with ThreadPoolExecutor(max(1, ahead)) as pool:
        pending: deque = deque()
        for shard in range(count):
            pending.append((shard, pool.submit(get, shard)))
            if len(pending) > ahead:
                yield from _ready(pending.popleft())
        while pending:
            yield from _ready(pending.popleft())


def _ready(item: tuple[int, Any]) -> Iterator[tuple[int, list[dict]]]:
    shard, future = item
    body = future.result()
    if body is not None:
        yield shard, json.loads(body)["records"]
