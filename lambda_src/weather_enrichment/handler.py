"""WeatherEnrichment: hourly weather for every detection record of an execution.

Reads ``$INPUT_PREFIX/<execution_id>/shard-<n>.json`` from the processed bucket for each of the
execution's ``shard_count`` shards twice, one at a time (memory stays one shard plus the weather):
first to list the site-days the records need, then to enrich them and write
``$OUTPUT_PREFIX/<execution_id>/shard-<n>.json``.

Between the two passes it gets those site-days' hourly weather: first from the site-day cache
(``$CACHE_PREFIX/<lat>,<lon>/<YYYY-MM>.json`` in the processed bucket, one object per site and
month; only the days some record needs are read), then from the provider for the rest: per
calendar month one shared range (its first to last missing day) for up to
``WEATHER_SITES_PER_REQUEST`` sites a request, however sparse the days (Open-Meteo's archive answers a
``start_date``/``end_date`` range and comma-separated location lists:
https://open-meteo.com/en/docs/historical-weather-api), at most ``WEATHER_MAX_IN_FLIGHT`` requests
at a time; of an answer only the days some record needs are kept, as float32. What it fetched
is merged into the cache objects (complete days only), so a retry or an
overlapping manifest does not ask again and a warm rerun makes no request. A 429 waits its
``Retry-After`` (at most ``WEATHER_MAX_RETRY_AFTER`` s); other failures back off exponentially.

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

import http.client
import json
import math
import os
import random
import threading
import time
import urllib.parse
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
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
    return (round(lat, 2), round(lon, 2))


# A day of a site is 24 x len(HOURLY) float32 (384 B, not 768 as float64): the provider's values
# have at most two decimals, float32 keeps seven significant digits, and ``DECIMALS`` gives them
# back exactly.
DECIMALS = 3


def day_values(series: dict[str, list], offset: int) -> array:
    """24 hours x HOURLY of one day from an answer's ``hourly`` series, NaN where it has none."""
    out = array("f", [math.nan]) * (24 * len(HOURLY))
    for h in range(24):
        for i, name in enumerate(HOURLY):
            values = series.get(name) or ()
            value = values[offset + h] if offset + h < len(values) else None
            if value is not None:
                out[h * len(HOURLY) + i] = float(value)
    return out


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
    failed: dict[SiteDay, str] = field(default_factory=dict)
    failed_in_a_row: int = 0
    requests: int = 0
    failed_attempts: int = 0  # requests answered with an error or not at all (retried or given up)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hour(self, lat: float, lon: float, when: datetime) -> dict[str, Any]:
        """Weather at ``when`` (UTC, truncated to the hour) for a site, fetched if not known yet."""
        key = (site_of(lat, lon), when.strftime("%Y-%m-%d"))
        if key not in self.days and key not in self.failed:
            self.fetch([key])
        if key in self.failed:
            raise WeatherError(self.failed[key])
        values = self.days[key]
        row = {name: values[when.hour * len(HOURLY) + i] for i, name in enumerate(HOURLY)}
        if all(math.isnan(v) for v in row.values()):
            raise WeatherError(f"no hour {when.strftime('%Y-%m-%dT%H:00')} in the provider's answer")
        return {name: None if math.isnan(v) else round(v, DECIMALS) for name, v in row.items()}

    def fetch(self, wanted: Iterable[SiteDay]) -> None:
        """Fetch the site-days not known yet: per calendar month, one range (its first to last
        missing day over all sites) for up to ``sites_per_request`` sites a request, so requests
        are ceil(sites / sites_per_request) a month however sparse the days. Only the wanted
        days of an answer are kept."""
        months: dict[str, dict[Site, set[str]]] = defaultdict(lambda: defaultdict(set))
        for site, day in wanted:
            if (site, day) not in self.days and (site, day) not in self.failed:
                months[day[:7]][site].add(day)
        batches = []
        for _, sites_days in sorted(months.items()):
            start = min(min(days) for days in sites_days.values())
            end = max(max(days) for days in sites_days.values())
            sites = sorted(sites_days)
            for i in range(0, len(sites), self.sites_per_request):
                chunk = {site: sites_days[site] for site in sites[i : i + self.sites_per_request]}
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
                index = {stamp: i for i, stamp in enumerate(series.get("time") or []) if stamp.endswith("T00:00")}
                for day in wanted[site]:
                    offset = index.get(f"{day}T00:00")
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


WRITE_ATTEMPTS = 3  # a cache object another execution keeps rewriting: its days are asked again later
WRITE_CONFLICTS = {"PreconditionFailed", "ConditionalRequestConflict"}


class SiteDayCache:
    """Fetched weather kept in the processed bucket, one object per site and month:
    ``{"fields": HOURLY, "days": {"YYYY-MM-DD": [24 x len(HOURLY) values]}}``. Only the days some
    record needs are read into memory; a write merges the new days into what the object holds,
    conditional on the object being what it read (two executions writing the same month at once
    both keep their days)."""

    def __init__(self, s3: Any, bucket: str, prefix: str, threads: int = 64) -> None:
        # 64 GETs at once: sparse data (5,000 sites over a year) is ~60,000 site-month objects,
        # ~25 ms each; 16 at once spent most of the function's time reading them.
        self.s3, self.bucket, self.prefix, self.threads = s3, bucket, prefix, threads
        self.absent: set[tuple[Site, str]] = set()  # objects load found missing: store need not read them

    def key(self, site: Site, month: str) -> str:
        return f"{self.prefix}/{site[0]:.2f},{site[1]:.2f}/{month}.json"

    def _read(self, site: Site, month: str, keep: set[str] | None = None) -> tuple[dict[str, array], dict]:
        """The object's days and the condition a write over it needs (If-Match its ETag, or
        If-None-Match * when there is none: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html)."""
        s3 = self.s3  # called by its name: make iam-check follows names
        try:
            answer = s3.get_object(Bucket=self.bucket, Key=self.key(site, month))
        except s3.exceptions.NoSuchKey:
            self.absent.add((site, month))
            return {}, {"IfNoneMatch": "*"}
        condition = {"IfMatch": answer["ETag"]} if answer.get("ETag") else {}
        return cached_days(answer["Body"].read(), month, keep), condition

    def load(self, wanted: Iterable[SiteDay], client: WeatherClient) -> int:
        """The cached ones of these site-days into ``client.days``; how many were found."""
        months = by_site_month(wanted)

        def one(site_month: tuple[Site, str]) -> int:
            days, _ = self._read(*site_month, keep=months[site_month])
            for day, values in days.items():
                client.days[site_month[0], day] = values
            return len(days)

        with ThreadPoolExecutor(self.threads) as pool:
            return sum(pool.map(one, sorted(months)))

    def store(self, fetched: Iterable[SiteDay], client: WeatherClient) -> None:
        """Add these site-days' complete days to their site-month objects (each object built in
        its own turn: all of them at once were hundreds of MB of Python floats)."""
        months = by_site_month(fetched)

        def one(site_month: tuple[Site, str]) -> None:
            site, month = site_month
            for attempt in range(WRITE_ATTEMPTS):
                if site_month in self.absent and not attempt:
                    days, condition = {}, {"IfNoneMatch": "*"}
                else:
                    days, condition = self._read(site, month)
                for day in months[site_month]:
                    values = client.days.get((site, day))
                    if values is not None and not any(math.isnan(x) for x in values):
                        days[day] = values
                complete = {day: [round(x, DECIMALS) for x in days[day]] for day in sorted(days)}
                body = json.dumps({"fields": HOURLY, "days": complete}).encode()
                s3 = self.s3
                try:
                    s3.put_object(
                        Bucket=self.bucket,
                        Key=self.key(site, month),
                        Body=body,
                        ContentType="application/json",
                        **condition,
                    )
                except ClientError as exc:  # another execution wrote it since: read again, merge
                    if exc.response.get("Error", {}).get("Code") not in WRITE_CONFLICTS:
                        raise
                    continue
                self.absent.discard(site_month)
                return

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(one, sorted(months)))


def by_site_month(site_days: Iterable[SiteDay]) -> dict[tuple[Site, str], set[str]]:
    out: dict[tuple[Site, str], set[str]] = defaultdict(set)
    for site, day in site_days:
        out[site, day[:7]].add(day)
    return out


def cached_days(body: bytes, month: str, keep: set[str] | None = None) -> dict[str, array]:
    """The days of a cache object (only those in ``keep`` if given); nothing (a miss: fetched
    again and overwritten) when it is unreadable, truncated, of other variables, or a day is not
    24 hours of numbers."""
    width = 24 * len(HOURLY)
    try:
        stored = json.loads(body)
        if tuple(stored.get("fields", ())) != HOURLY:
            return {}
        days = {
            day: array("f", (float(v) for v in values))
            for day, values in stored["days"].items()
            if isinstance(day, str) and day[:7] == month and isinstance(values, list) and (keep is None or day in keep)
        }
    except (ValueError, TypeError, AttributeError, KeyError):
        return {}
    if any(len(v) != width or any(math.isnan(x) for x in v) for v in days.values()):
        return {}
    return days


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def site_day(record: dict) -> SiteDay:
    return site_of(float(record["lat"]), float(record["lon"])), parse_time(record["captured_at"]).strftime("%Y-%m-%d")


def needed(records: Iterable[dict]) -> set[SiteDay]:
    """The site-days these records need (a record that names none is marked later, by enrich)."""
    out = set()
    for record in records:
        try:
            out.add(site_day(record))
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
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
    wanted: set[SiteDay] = set()
    for _, records in read_shards(s3, bucket, source, count):
        wanted |= needed(records)
    cache = SiteDayCache(s3, bucket, os.environ["CACHE_PREFIX"]) if os.environ.get("CACHE_PREFIX") else None
    cached = cache.load(wanted, client) if cache else 0
    unknown = wanted - client.days.keys()
    client.fetch(unknown)
    fetched = {site_day for site_day in unknown if site_day in client.days}
    if cache and fetched:
        cache.store(fetched, client)
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
        site_days=len(wanted),
        from_cache=len(wanted) - len(unknown),
        # a shard missing here failed within the tolerated failures (its Map child): nothing to enrich
        missing=missing(count, found),
    )
    log.info("weather enrichment done", cached_days_read=cached, **totals)
    return totals
