"""WeatherEnrichment: hourly weather for every detection record of an execution.

Reads ``$INPUT_PREFIX/<execution_id>/shard-<n>.json`` from the processed bucket for each of the
execution's ``shard_count`` shards twice, one at a time (memory stays one shard plus the weather):
first to list the site-days the records need, then to enrich them and write
``$OUTPUT_PREFIX/<execution_id>/shard-<n>.json``.

Between the two passes, month by month, it gets those site-days' hourly weather: first from the
site-day cache (``$CACHE_PREFIX/<YYYY-MM>/<group>.json`` in the processed bucket, one object per
calendar month and group of sites, a site's group a stable hash of its coordinates: sparse data of
thousands of sites then costs hundreds of objects, not one per site and month; only the days some
record needs are decoded), then from the provider for the rest: up to ``WEATHER_SITES_PER_REQUEST``
sites a request (in order of their first missing day), one range each (first to last missing day of
its sites, within the month), however sparse the days
(Open-Meteo's archive answers a ``start_date``/``end_date`` range and comma-separated location
lists: https://open-meteo.com/en/docs/historical-weather-api), at most ``WEATHER_MAX_IN_FLIGHT``
requests at a time; of an answer only the days some record needs are kept, as float32. What it
fetched is merged into the month's cache objects (complete days only, conditional writes), so a
retry or an overlapping manifest does not ask again and a warm rerun makes no request. Then of each
site-day only the hours its records need are kept (memory: a few floats a record, not 96 per
site-day). A 429 waits its ``Retry-After`` (at most ``WEATHER_MAX_RETRY_AFTER`` s); other failures
back off exponentially.

A failed lookup marks the record (``weather_status``); it never drops it. After
``WEATHER_GIVE_UP_AFTER`` requests failed in a row for want of an answer (no connection,
time-outs, 429/5xx) the provider is taken as down for the rest of the invocation, and lookups stop
when the function's remaining time nears what writing the shards needs: the records are marked at
once instead of the step timing out after the GPU money is spent.

Its answer names the shards of ``shard_count`` it found no input for (``missing``, bounded text):
they failed within the tolerated failures. After a fan-out that failed beyond them the workflow asks
it the same with ``"mode": "list_missing"`` (state ListFailedShards): a listing of its input prefix
only, for the failure notice.

Environment: PROCESSED_BUCKET, INPUT_PREFIX, OUTPUT_PREFIX, CACHE_PREFIX (from conf/pipeline.py),
WEATHER_BASE_URL, WEATHER_CONNECT_TIMEOUT, WEATHER_READ_TIMEOUT, WEATHER_MAX_RETRIES,
WEATHER_GIVE_UP_AFTER, WEATHER_MAX_IN_FLIGHT, WEATHER_SITES_PER_REQUEST, WEATHER_MAX_RETRY_AFTER,
WEATHER_API_KEY_ARN (an SSM SecureString: when it exists, its value is sent as ``apikey``;
with a key the profile's base_url should be the customer endpoint,
https://customer-archive-api.open-meteo.com/v1/archive; without one the free endpoint allows
600 calls a minute, 5,000 an hour, 10,000 a day, a call weighing locations x days / 14).
Every failed attempt is logged with its error and duration.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import math
import os
import random
import sys
import threading
import time
import urllib.parse
import zlib
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from itertools import chain
from typing import Any

from botocore.exceptions import ClientError
from pipeline_log import execution_id_of, get_logger
from shards import missing, read_shards, written_shards

HOURLY = ("temperature_2m", "precipitation", "wind_speed_10m", "cloud_cover")
RETRY_STATUS = {429, 500, 502, 503, 504}
Site = tuple[float, float]  # (lat, lon) rounded to 0.01 degree, ~1 km: finer than the reanalysis grid
SiteDay = tuple[Site, str]  # (site, "YYYY-MM-DD")


class WeatherError(Exception):
    """The provider could not answer a request; ``provider_down`` when that looks like an outage
    (no connection, time-outs, 429/5xx), not like a refusal of this one request."""

    def __init__(self, message: str, *, provider_down: bool = False) -> None:
        super().__init__(message)
        self.provider_down = provider_down


def site_of(lat: float, lon: float) -> Site:
    """Coordinates rounded to the provider's grid; ``+ 0.0`` makes -0.0 the same site (and cache
    name) as 0.0."""
    return (round(lat, 2) + 0.0, round(lon, 2) + 0.0)


# A day of a site is len(HOURLY) x 24 float32, variable by variable (384 B, not 768 as float64):
# the provider's values have at most two decimals, float32 keeps seven significant digits, and
# ``DECIMALS`` gives them back exactly.
DECIMALS = 3
DAY_VALUES = 24 * len(HOURLY)


def day_values(series: dict[str, list], offset: int) -> array:
    """The day at ``offset`` of an answer's ``hourly`` series (variable by variable, 24 hours
    each), NaN where it has none."""
    parts = [(series.get(name) or ())[offset : offset + 24] for name in HOURLY]
    if all(len(part) == 24 for part in parts):
        try:
            return array("f", chain.from_iterable(parts))  # the common case, at C speed
        except TypeError:  # a null among them
            pass
    out = array("f", [math.nan]) * DAY_VALUES
    for i, part in enumerate(parts):
        for h, value in enumerate(part):
            if isinstance(value, int | float):
                out[i * 24 + h] = float(value)
    return out


def answer_offset(times: list[str], start: str, day: str) -> int | None:
    """Where ``day`` begins in an answer's hourly ``time`` (hours from ``start``, UTC), checked."""
    offset = (datetime.fromisoformat(day) - datetime.fromisoformat(start)).days * 24
    if 0 <= offset < len(times) and times[offset] == f"{day}T00:00":
        return offset
    return next((i for i, stamp in enumerate(times) if stamp == f"{day}T00:00"), None)


@dataclass
class WeatherClient:
    base_url: str
    api_key: str | None = None  # sent as ``apikey`` (Open-Meteo's commercial endpoints); None: the free one
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_retries: int = 3
    backoff_base: float = 0.5
    give_up_after: int = 5
    max_in_flight: int = 4
    sites_per_request: int = 50
    max_retry_after: float = 60.0
    deadline: float = math.inf  # time.monotonic() after which no request starts
    sleep: Callable[[float], None] = time.sleep
    log: Callable[..., None] = lambda message, **fields: None
    days: dict[SiteDay, array] = field(default_factory=dict)
    # of a site-day only the hours records need: (bit h set for hour h, their values hour by hour)
    kept: dict[SiteDay, tuple[int, array]] = field(default_factory=dict)
    failed: dict[SiteDay, str] = field(default_factory=dict)
    failed_in_a_row: int = 0
    requests: int = 0
    failed_attempts: int = 0  # requests answered with an error or not at all (retried or given up)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hour(self, lat: float, lon: float, when: datetime) -> dict[str, Any]:
        """Weather at ``when`` (UTC, truncated to the hour) for a site, fetched if not known yet."""
        key = (site_of(lat, lon), when.strftime("%Y-%m-%d"))
        mask, hours = self.kept.get(key, (0, None))
        if hours is not None and mask >> when.hour & 1:
            base = (mask & ((1 << when.hour) - 1)).bit_count() * len(HOURLY)
            row = {name: hours[base + i] for i, name in enumerate(HOURLY)}
        else:
            if key not in self.days and key not in self.failed:
                self.fetch([key], again=True)
            if key in self.failed:
                raise WeatherError(self.failed[key])
            values = self.days[key]
            row = {name: values[i * 24 + when.hour] for i, name in enumerate(HOURLY)}
        if all(math.isnan(v) for v in row.values()):
            raise WeatherError(f"no hour {when.strftime('%Y-%m-%dT%H:00')} in the provider's answer")
        return {name: None if math.isnan(v) else round(v, DECIMALS) for name, v in row.items()}

    def keep_only(self, hours: dict[SiteDay, int]) -> None:
        """Trade the full days of these site-days for the hours (bit h: hour h) records need."""
        for key, mask in hours.items():
            values = self.days.pop(key, None)
            if values is not None:
                wanted = [h for h in range(24) if mask >> h & 1]
                self.kept[key] = (mask, array("f", (values[i * 24 + h] for h in wanted for i in range(len(HOURLY)))))

    def fetch(self, wanted: Iterable[SiteDay], *, again: bool = False) -> None:
        """Fetch the site-days not known yet (``again``: also those whose hours were kept):
        per calendar month, up to ``sites_per_request`` sites a request, one range each (its
        sites' first to last missing day), so requests are ceil(sites / sites_per_request) a
        month however sparse the days. Only the wanted days of an answer are kept."""
        months: dict[str, dict[Site, set[str]]] = defaultdict(lambda: defaultdict(set))
        for site, day in wanted:
            key = (site, day)
            if key not in self.days and key not in self.failed and (again or key not in self.kept):
                months[day[:7]][site].add(day)
        batches = []
        for _, sites_days in sorted(months.items()):
            # in order of their first missing day: a request's range (its sites' first to last
            # day) is then shorter for sparse days (~20 % fewer location-days), the count the same
            sites = sorted(sites_days, key=lambda site: (min(sites_days[site]), site))
            for i in range(0, len(sites), self.sites_per_request):
                chunk = {site: sites_days[site] for site in sites[i : i + self.sites_per_request]}
                start = min(min(days) for days in chunk.values())
                end = max(max(days) for days in chunk.values())
                batches.append((start, end, chunk))
        if self.max_in_flight <= 1 or len(batches) <= 1:
            for batch in batches:
                self._batch(*batch)
            return
        with ThreadPoolExecutor(self.max_in_flight) as pool:
            list(pool.map(lambda batch: self._batch(*batch), batches))

    def _batch(self, start: str, end: str, wanted: dict[Site, set[str]]) -> None:
        sites = list(wanted)
        try:
            with self._lock:
                if self.failed_in_a_row >= self.give_up_after:
                    raise WeatherError(f"provider taken as down after {self.failed_in_a_row} requests failed in a row")
            if time.monotonic() >= self.deadline:
                raise WeatherError("no time left in the invocation to ask the provider")
            answers = self._fetch(sites, start, end)
        except WeatherError as exc:
            with self._lock:
                if exc.provider_down:
                    self.failed_in_a_row += 1
                for site, days in wanted.items():
                    for day in days:
                        self.failed.setdefault((site, day), str(exc))
            return
        with self._lock:
            self.failed_in_a_row = 0
            for site, series in zip(sites, answers, strict=True):
                times = series.get("time") or []
                for day in wanted[site]:
                    offset = answer_offset(times, start, day)
                    if offset is None:
                        self.failed[site, day] = f"no day {day} in the provider's answer"
                    else:
                        self.days[site, day] = day_values(series, offset)

    def _fetch(self, sites: list[Site], start: str, end: str) -> list[dict]:
        """The ``hourly`` series of each site for start..end, in order."""
        query = urllib.parse.urlencode(
            {
                "latitude": ",".join(f"{lat:g}" for lat, _ in sites),
                "longitude": ",".join(f"{lon:g}" for _, lon in sites),
                "start_date": start,
                "end_date": end,
                "hourly": ",".join(HOURLY),
                "timezone": "UTC",
                **({"apikey": self.api_key} if self.api_key else {}),
            }
        )
        url = urllib.parse.urlsplit(f"{self.base_url}?{query}")
        last_error, wait = "no attempt", 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                wait = wait or self.backoff_base * 2 ** (attempt - 1) * (1 + random.random())  # noqa: S311 - jitter
                if time.monotonic() + wait >= self.deadline:
                    break
                self.sleep(wait)
            started = time.monotonic()
            try:
                status, headers, body = self._get(url)
            except (OSError, http.client.HTTPException) as exc:
                last_error, wait = f"{exc.__class__.__name__}: {exc}", 0.0
                self._failed_attempt(attempt, last_error, started, sites, start, end)
                continue
            if status == 200:
                try:
                    answer = json.loads(body)
                    answers = answer if isinstance(answer, list) else [answer]
                    if len(answers) != len(sites):
                        raise ValueError(f"{len(answers)} locations answered for {len(sites)} asked")
                    return [a["hourly"] for a in answers]
                except (ValueError, KeyError, TypeError) as exc:
                    raise WeatherError(f"unexpected answer: {exc}") from exc
            last_error = f"HTTP {status}"
            self._failed_attempt(attempt, last_error, started, sites, start, end)
            if status not in RETRY_STATUS:
                raise WeatherError(last_error)  # it answered: a refusal of this request, not an outage
            wait = retry_after(headers.get("retry-after"), self.max_retry_after) if status == 429 else 0.0
        raise WeatherError(last_error, provider_down=True)

    def _failed_attempt(self, attempt: int, error: str, started: float, sites: list[Site], *span: str) -> None:
        start, end = span
        with self._lock:
            self.failed_attempts += 1
        self.log(
            "weather lookup failed",
            attempt=attempt + 1,
            error=error,
            seconds=round(time.monotonic() - started, 3),
            sites=len(sites),
            lat=sites[0][0],
            lon=sites[0][1],
            day=start,
            end=end,
        )

    def _get(self, url: urllib.parse.SplitResult) -> tuple[int, dict[str, str], bytes]:
        """One GET with separate connect and read time-outs."""
        with self._lock:
            self.requests += 1
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=self.connect_timeout)
        try:
            conn.connect()
            conn.sock.settimeout(self.read_timeout)
            conn.request("GET", f"{url.path}?{url.query}", headers={"Accept": "application/json"})
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()


def retry_after(value: str | None, cap: float) -> float:
    """Seconds a 429's ``Retry-After`` asks for (delay-seconds or an HTTP date, RFC 9110 10.2.3),
    at most ``cap``; 0 (the client's own back-off) when absent or unreadable."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return 0.0
    return min(max(seconds, 0.0), cap)


WRITE_ATTEMPTS = 5  # a cache object other executions keep rewriting: its days are asked again later
# A conditional PUT that lost a race: 412 (the ETag changed, or the object appeared), 409 (a write
# at the same time), 404 (If-Match on an object deleted since: expiry, or a cleared cache)
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
WRITE_CONFLICTS = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"}
# Cache objects a month: a site's group is CRC-32 of its rounded coordinates modulo this (stable
# across invocations, unlike hash()). 5,000 sites over a year are 768 objects, not ~60,000; a full
# month of 5,000 sites is ~1.2 MB an object.
CACHE_GROUPS = 64
CACHE_LAYOUT = 2  # 1: one object per site and month, ``<lat>,<lon>/<YYYY-MM>.json`` (not read: misses)
ENCODED_DAY = len(base64.b64encode(bytes(DAY_VALUES * 4)))


def site_name(site: Site) -> str:
    return f"{site[0]:.2f},{site[1]:.2f}"


def site_group(site: Site) -> int:
    return zlib.crc32(site_name(site).encode()) % CACHE_GROUPS


def complete(values: array) -> bool:
    """Every value of the day is a number (no NaN: an hour the provider had none for)."""
    return math.isfinite(sum(values))  # one pass in C; a NaN or inf anywhere makes the sum so


def encode_day(values: array) -> str:
    """A day as base64 of its float32, little-endian (the JSON stays small and is parsed and
    written without a float conversion per value)."""
    if sys.byteorder == "big":
        values = array("f", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def decode_day(text: str) -> array | None:
    """A cached day, or None (a miss) unless it is exactly 24 hours of every variable with a value."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    if len(raw) != DAY_VALUES * 4:
        return None
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values if complete(values) else None


class SiteDayCache:
    """Fetched weather kept in the processed bucket, one object per calendar month and group of
    sites (:func:`site_group`): ``{"layout": 2, "fields": HOURLY, "sites": {"<lat>,<lon>":
    {"YYYY-MM-DD": encode_day(...)}}}``. Only the days some record needs are decoded; a write
    merges the new days into what the object holds, conditional on the object being what it read
    (If-Match its ETag, If-None-Match * when there was none:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html), so two
    executions writing the same object at once both keep their days. Objects of the earlier
    layout (one per site and month, at other keys) are not read: those days are misses, asked
    again and written here; the processed bucket's expiry removes the old objects."""

    def __init__(self, s3: Any, bucket: str, prefix: str, threads: int = 16) -> None:
        self.s3, self.bucket, self.prefix, self.threads = s3, bucket, prefix, threads
        self.absent: set[tuple[int, str]] = set()  # objects load found missing: store need not read them

    def key(self, group: int, month: str) -> str:
        return f"{self.prefix}/{month}/{group:02d}.json"

    def _read(self, group: int, month: str) -> tuple[dict[str, dict[str, str]], dict]:
        """The object's entries and the condition a write over it needs."""
        s3 = self.s3  # called by its name: make iam-check follows names
        try:
            answer = s3.get_object(Bucket=self.bucket, Key=self.key(group, month))
        except s3.exceptions.NoSuchKey:
            self.absent.add((group, month))
            return {}, {"IfNoneMatch": "*"}
        condition = {"IfMatch": answer["ETag"]} if answer.get("ETag") else {}
        return cached_entries(answer["Body"].read()), condition

    def _each(self, site_days: Iterable[SiteDay], work: Callable[[int, str, list[SiteDay]], int | None]) -> int:
        """``work`` on each (group, month) object these site-days fall in, a few at once."""
        objects: dict[tuple[int, str], list[SiteDay]] = defaultdict(list)
        for site, day in site_days:
            objects[site_group(site), day[:7]].append((site, day))
        with ThreadPoolExecutor(self.threads) as pool:
            return sum(pool.map(lambda item: work(*item[0], item[1]) or 0, sorted(objects.items())))

    def load(self, wanted: Iterable[SiteDay], client: WeatherClient) -> int:
        """The cached ones of these site-days into ``client.days``; how many were found."""

        def one(group: int, month: str, keys: list[SiteDay]) -> int:
            try:
                entries, _ = self._read(group, month)
            except ClientError as exc:  # the cache only saves requests: an unreadable object is a miss
                get_logger("weather_enrichment", None).warning(
                    "cache object unreadable: its days are asked for", key=self.key(group, month), error=str(exc)
                )
                return 0
            found = 0
            for key in keys:
                values = decode_day(entries.get(site_name(key[0]), {}).get(key[1], ""))
                if values is not None:
                    client.days[key] = values
                    found += 1
            return found

        return self._each(wanted, one)

    def store(self, fetched: Iterable[SiteDay], client: WeatherClient) -> None:
        """Add these site-days' complete days to their objects (each object read, merged and
        written in its own turn, a few at once). An object holds every site any execution cached
        that month (~1.2 MB at 5,000 sites): memory follows the cache's breadth, not the execution's.
        A write S3 refuses is logged and skipped: the lookups are done, a later run asks again."""

        def one(group: int, month: str, keys: list[SiteDay]) -> None:
            new = {}
            for site, day in keys:
                values = client.days.get((site, day))
                if values is not None and complete(values):
                    new.setdefault(site_name(site), {})[day] = encode_day(values)
            if not new:  # no complete day: nothing worth a write
                return
            try:
                self._merge(group, month, new)
            except ClientError as exc:  # the lookups are done: a failed cache write costs a later run requests
                get_logger("weather_enrichment", None).warning(
                    "cache write failed: its days are asked for again next time",
                    key=self.key(group, month),
                    error=str(exc),
                )

        self._each(fetched, one)

    def _merge(self, group: int, month: str, new: dict[str, dict[str, str]]) -> None:
        """Read, merge and write one object conditionally, again after a lost race (with a short
        random pause), at most WRITE_ATTEMPTS times; then give the days up, in the log."""
        for attempt in range(WRITE_ATTEMPTS):
            if (group, month) in self.absent and not attempt:
                entries, condition = {}, {"IfNoneMatch": "*"}
            else:
                entries, condition = self._read(group, month)
            for name, days in new.items():
                entries.setdefault(name, {}).update(days)
            body = json.dumps({"layout": CACHE_LAYOUT, "fields": HOURLY, "sites": entries}, separators=(",", ":"))
            s3 = self.s3
            try:
                s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key(group, month),
                    Body=body.encode(),
                    ContentType="application/json",
                    **condition,
                )
            except ClientError as exc:  # another execution wrote it since: read again, merge
                if exc.response.get("Error", {}).get("Code") not in WRITE_CONFLICTS:
                    raise
                self.absent.discard((group, month))
                time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter
                continue
            self.absent.discard((group, month))
            return
        get_logger("weather_enrichment", None).warning(
            "cache object kept changing: its days are asked for again next time",
            key=self.key(group, month),
            attempts=WRITE_ATTEMPTS,
            days=sum(len(days) for days in new.values()),
        )


def cached_entries(body: bytes) -> dict[str, dict[str, str]]:
    """A cache object's entries, site by day (each still encoded: :func:`decode_day` tells a
    corrupt one, a miss); nothing (every day a miss, the object overwritten on the next write)
    when it is unreadable, truncated, of another layout or other variables. Entries that are no
    encoded day are left out."""
    try:
        stored = json.loads(body)
        if stored.get("layout") != CACHE_LAYOUT or tuple(stored.get("fields", ())) != HOURLY:
            return {}
        return {
            site: {d: v for d, v in days.items() if isinstance(v, str) and len(v) == ENCODED_DAY}
            for site, days in stored["sites"].items()
            if isinstance(days, dict)
        }
    except (ValueError, TypeError, AttributeError, KeyError):
        return {}


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def needed(records: Iterable[dict]) -> set[SiteDay]:
    """The site-days these records need (a record that names none is marked later, by enrich)."""
    return set(needed_hours(records))


def needed_hours(
    records: Iterable[dict], into: dict[SiteDay, int] | None = None, sites: dict[Site, Site] | None = None
) -> dict[SiteDay, int]:
    """The site-days these records need, each with its hours (bit h: hour h), added to ``into``;
    a site (in ``sites``) or day seen before is the same object (memory: sparse data is hundreds
    of thousands of site-days)."""
    out: dict[SiteDay, int] = {} if into is None else into
    known: dict[Site, Site] = {} if sites is None else sites
    for record in records:
        try:
            site, when = site_of(float(record["lat"]), float(record["lon"])), parse_time(record["captured_at"])
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        key = (known.setdefault(site, site), sys.intern(when.strftime("%Y-%m-%d")))
        out[key] = out.get(key, 0) | 1 << when.hour
    return out


def enrich(records: list[dict], client: WeatherClient) -> dict[str, int]:
    counts = {"records": len(records), "enriched": 0, "failed": 0}
    client.fetch(needed(records))
    for record in records:
        try:
            record["weather"] = client.hour(
                float(record["lat"]), float(record["lon"]), parse_time(record["captured_at"])
            )
            record["weather_status"] = "ok"
            counts["enriched"] += 1
        except (WeatherError, KeyError, ValueError, TypeError, AttributeError) as exc:
            record["weather"] = None
            record["weather_status"] = f"failed: {exc}"
            counts["failed"] += 1
    return counts


def api_key(ssm: Any = None) -> str | None:
    """The weather API key from the SecureString parameter ``WEATHER_API_KEY_ARN`` names (the ARN
    of ``WEATHER_API_KEY_PARAMETER``, set by ``make weather-key``), read once per invocation;
    None when none is named or it does not exist (the free endpoint, no key)."""
    if not os.environ.get("WEATHER_API_KEY_ARN"):
        return None
    if ssm is None:
        import boto3

        ssm = boto3.client("ssm")
    try:
        answer = ssm.get_parameter(Name=os.environ["WEATHER_API_KEY_ARN"], WithDecryption=True)
        return answer["Parameter"]["Value"] or None
    except ssm.exceptions.ParameterNotFound:
        return None


def client_from_env(log: Callable[..., None], deadline: float = math.inf, ssm: Any = None) -> WeatherClient:
    env = os.environ.get
    return WeatherClient(
        base_url=os.environ["WEATHER_BASE_URL"],
        api_key=api_key(ssm),
        connect_timeout=float(env("WEATHER_CONNECT_TIMEOUT", "3")),
        read_timeout=float(env("WEATHER_READ_TIMEOUT", "10")),
        max_retries=int(env("WEATHER_MAX_RETRIES", "3")),
        give_up_after=int(env("WEATHER_GIVE_UP_AFTER", "5")),
        max_in_flight=int(env("WEATHER_MAX_IN_FLIGHT", "4")),
        sites_per_request=int(env("WEATHER_SITES_PER_REQUEST", "50")),
        max_retry_after=float(env("WEATHER_MAX_RETRY_AFTER", "60")),
        deadline=deadline,
        log=log,
    )


# Of the function's time, what the second pass (read, enrich, write every shard) is left; the
# lookups stop before it.
WRITE_RESERVE = 0.25


# The event's ``mode`` when the workflow asks, after a failed fan-out (ListFailedShards), only which
# shards have no input here: answered from a listing, no record read, no weather asked.
LIST_MISSING = "list_missing"


def handler(event: dict, context: Any, *, s3: Any = None, ssm: Any = None, client: WeatherClient | None = None) -> dict:
    execution_id = execution_id_of(event)
    log = get_logger("weather_enrichment", execution_id)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    bucket, source = os.environ["PROCESSED_BUCKET"], f"{os.environ['INPUT_PREFIX']}/{execution_id}"
    count = int(event["shard_count"])
    if event.get("mode") == LIST_MISSING:
        found = written_shards(s3, bucket, source) & set(range(count))
        # The same answer as an enrichment's (one declared answer per function), nothing enriched.
        totals = dict.fromkeys(("records", "enriched", "failed", "requests", "failed_attempts"), 0)
        totals.update(site_days=0, from_cache=0, shards=len(found), missing=missing(count, found))
        log.info("missing shards listed", **totals)
        return totals
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else math.inf
    deadline = time.monotonic() + remaining * (1 - WRITE_RESERVE)
    client = client or client_from_env(log.warning, deadline, ssm)
    target = os.environ["OUTPUT_PREFIX"]
    wanted: dict[SiteDay, int] = {}
    sites: dict[Site, Site] = {}
    for _, records in read_shards(s3, bucket, source, count):
        needed_hours(records, wanted, sites)
    site_days, cached, unknown = len(wanted), 0, 0
    months: dict[str, dict[SiteDay, int]] = defaultdict(dict)
    for key, mask in wanted.items():
        months[key[1][:7]][key] = mask
    del wanted
    cache = SiteDayCache(s3, bucket, os.environ["CACHE_PREFIX"]) if os.environ.get("CACHE_PREFIX") else None
    for month in sorted(months):  # one month's full days in memory at a time
        hours = months.pop(month)
        cached += cache.load(hours, client) if cache else 0
        missing_days = [key for key in hours if key not in client.days]
        unknown += len(missing_days)
        client.fetch(missing_days)
        fetched = [key for key in missing_days if key in client.days]
        if cache and fetched:
            cache.store(fetched, client)
        client.keep_only(hours)
    totals = {"records": 0, "enriched": 0, "failed": 0, "shards": 0}

    def put(shard: int, body: bytes) -> None:
        s3.put_object(
            Bucket=bucket, Key=f"{target}/{execution_id}/shard-{shard}.json", Body=body, ContentType="application/json"
        )

    with ThreadPoolExecutor(2) as writes:  # a shard's PUT runs while the next is enriched
        pending: list = []
        found: set[int] = set()
        for shard, records in read_shards(s3, bucket, source, count):
            found.add(shard)
            counts = enrich(records, client)
            body = json.dumps({"records": records}, sort_keys=True).encode()
            pending.append(writes.submit(put, shard, body))
            del records, body
            while len(pending) > 2:
                pending.pop(0).result()
            totals = {k: totals[k] + counts.get(k, 0) for k in totals}
            totals["shards"] += 1
        for write in pending:
            write.result()
    totals.update(
        requests=client.requests,
        failed_attempts=client.failed_attempts,
        site_days=site_days,
        from_cache=site_days - unknown,
        # a shard missing here failed within the tolerated failures (its Map child): nothing to enrich
        missing=missing(count, found),
    )
    log.info("weather enrichment done", cached_days_read=cached, **totals)
    return totals
