"""An execution's shard files: read in order with the next few GETs already under way, or only
listed, and which of them are missing.

The steps after the fan-out read every shard of the execution one at a time (memory stays one
shard); at S3's tens of ms a GET, reading ahead hides that wait behind the work on the current one.
A shard the fan-out's last step wrote nothing for failed (or was stopped with a failed fan-out);
its number goes into the step's answer as bounded text (:func:`missing`).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
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


SHARD_FILE = re.compile(r"shard-(\d+)\.json")


def written_shards(s3: Any, bucket: str, prefix: str) -> set[int]:
    """The numbers of the ``<prefix>/shard-<n>.json`` objects there are, from a listing (no object
    read: 10,000 shards are 10 pages)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    names = (o["Key"].rsplit("/", 1)[1] for page in pages for o in page.get("Contents", []))
    return {int(match.group(1)) for name in names if (match := SHARD_FILE.fullmatch(name))}


def missing(count: int, found: Iterable[int], bound: int = 2048) -> str:
    """The shards of ``range(count)`` not in ``found``, as text (:func:`listed`)."""
    return listed(sorted(set(range(count)) - set(found)), bound)


def listed(numbers: list[int], bound: int = 2048) -> str:
    """Shard numbers as text within ``bound`` characters (an answer's size must not grow with the
    data): the rest counted, never listed."""
    text = ", ".join(map(str, numbers)) or "none"
    if len(text) <= bound:
        return text
    cut = text[: bound - 40].rsplit(", ", 1)[0]
    return f"{cut} and {len(numbers) - cut.count(', ') - 1} more"
