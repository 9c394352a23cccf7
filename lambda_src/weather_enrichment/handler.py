"""WeatherEnrichment: hourly weather for every detection record of an execution.

Reads ``$INPUT_PREFIX/<execution_id>/shard-<n>.json`` from the processed bucket for each of the
execution's ``shard_count`` shards, asks the weather provider once per site and day (a day's
response holds all 24 hours, so every site-hour is fetched at most once), and writes
``$OUTPUT_PREFIX/<execution_id>/shard-<n>.json``. A failed lookup marks the record
(``weather_status``); it never drops it. A site-day that failed is not asked again in the same
invocation, and after ``WEATHER_GIVE_UP_AFTER`` site-days failed in a row for want of an answer
(no connection, time-outs, 429/5xx) the provider is taken as down for the rest of it: the records
are marked at once instead of each paying the retries (an outage would otherwise run the function
into its time-out and fail the whole step).

Environment: PROCESSED_BUCKET, INPUT_PREFIX, OUTPUT_PREFIX (from conf/pipeline.py),
WEATHER_BASE_URL, WEATHER_CONNECT_TIMEOUT, WEATHER_READ_TIMEOUT, WEATHER_MAX_RETRIES,
WEATHER_GIVE_UP_AFTER. Every failed attempt is logged with its error and duration. The default
provider is Open-Meteo's historical archive API.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline_log import execution_id_of, get_logger

HOURLY = ("temperature_2m", "precipitation", "wind_speed_10m", "cloud_cover")
RETRY_STATUS = {429, 500, 502, 503, 504}


class WeatherError(Exception):
    """The provider could not answer for one site-day; ``provider_down`` when that looks like an
    outage (no connection, time-outs, 429/5xx), not like a refusal of this one request."""

    def __init__(self, message: str, *, provider_down: bool = False) -> None:
        super().__init__(message)
        self.provider_down = provider_down


@dataclass
class WeatherClient:
    base_url: str
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_retries: int = 3
    backoff_base: float = 0.5
    give_up_after: int = 5
    sleep: Callable[[float], None] = time.sleep
    log: Callable[..., None] = lambda message, **fields: None
    cache: dict[tuple[float, float, str], dict[str, Any]] = field(default_factory=dict)
    failed: dict[tuple[float, float, str], str] = field(default_factory=dict)
    failed_in_a_row: int = 0
    requests: int = 0

    def hour(self, lat: float, lon: float, when: datetime) -> dict[str, Any]:
        """Weather at ``when`` (UTC, truncated to the hour) for a site; cached per site-day, and so
        is a failure."""
        day = when.strftime("%Y-%m-%d")
        key = (round(lat, 2), round(lon, 2), day)
        if key in self.failed:
            raise WeatherError(self.failed[key])
        if key not in self.cache:
            if self.failed_in_a_row >= self.give_up_after:
                raise WeatherError(f"provider taken as down after {self.failed_in_a_row} site-days failed in a row")
            try:
                self.cache[key] = self._fetch_day(*key)
            except WeatherError as exc:
                self.failed[key] = str(exc)
                self.failed_in_a_row = self.failed_in_a_row + 1 if exc.provider_down else 0
                raise
            self.failed_in_a_row = 0
        series = self.cache[key]
        stamp = when.strftime("%Y-%m-%dT%H:00")
        try:
            index = series["time"].index(stamp)
        except ValueError as exc:
            raise WeatherError(f"no hour {stamp} in the provider's answer") from exc
        return {name: series[name][index] for name in HOURLY if name in series}

    def _fetch_day(self, lat: float, lon: float, day: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(
            {
                "latitude": lat,
                "longitude": lon,
                "start_date": day,
                "end_date": day,
                "hourly": ",".join(HOURLY),
                "timezone": "UTC",
            }
        )
        url = urllib.parse.urlsplit(f"{self.base_url}?{query}")
        last_error = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(self.backoff_base * 2 ** (attempt - 1) * (1 + random.random()))  # noqa: S311 - jitter
            started = time.monotonic()
            try:
                status, body = self._get(url)
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"{exc.__class__.__name__}: {exc}"
                self._failed_attempt(attempt, last_error, started, lat, lon, day)
                continue
            if status == 200:
                try:
                    return json.loads(body)["hourly"]
                except (ValueError, KeyError) as exc:
                    raise WeatherError(f"unexpected answer: {exc}") from exc
            last_error = f"HTTP {status}"
            self._failed_attempt(attempt, last_error, started, lat, lon, day)
            if status not in RETRY_STATUS:
                raise WeatherError(last_error)  # it answered: a refusal of this request, not an outage
        raise WeatherError(last_error, provider_down=True)

    def _failed_attempt(self, attempt: int, error: str, started: float, lat: float, lon: float, day: str) -> None:
        seconds = round(time.monotonic() - started, 3)
        self.log("weather lookup failed", attempt=attempt + 1, error=error, seconds=seconds, lat=lat, lon=lon, day=day)

    def _get(self, url: urllib.parse.SplitResult) -> tuple[int, bytes]:
        """One GET with separate connect and read time-outs."""
        self.requests += 1
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=self.connect_timeout)
        try:
            conn.connect()
            conn.sock.settimeout(self.read_timeout)
            conn.request("GET", f"{url.path}?{url.query}", headers={"Accept": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def enrich(records: list[dict], client: WeatherClient) -> dict[str, int]:
    counts = {"records": len(records), "enriched": 0, "failed": 0}
    for record in records:
        try:
            record["weather"] = client.hour(
                float(record["lat"]), float(record["lon"]), parse_time(record["captured_at"])
            )
            record["weather_status"] = "ok"
            counts["enriched"] += 1
        except (WeatherError, KeyError, ValueError) as exc:
            record["weather"] = None
            record["weather_status"] = f"failed: {exc}"
            counts["failed"] += 1
    return counts


def client_from_env(log: Callable[..., None]) -> WeatherClient:
    return WeatherClient(
        base_url=os.environ["WEATHER_BASE_URL"],
        connect_timeout=float(os.environ.get("WEATHER_CONNECT_TIMEOUT", "3")),
        read_timeout=float(os.environ.get("WEATHER_READ_TIMEOUT", "10")),
        max_retries=int(os.environ.get("WEATHER_MAX_RETRIES", "3")),
        give_up_after=int(os.environ.get("WEATHER_GIVE_UP_AFTER", "5")),
        log=log,
    )


def handler(event: dict, context: Any, *, s3: Any = None, client: WeatherClient | None = None) -> dict:
    execution_id = execution_id_of(event)
    log = get_logger("weather_enrichment", execution_id)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    bucket, client = os.environ["PROCESSED_BUCKET"], client or client_from_env(log.warning)
    source, target = os.environ["INPUT_PREFIX"], os.environ["OUTPUT_PREFIX"]
    totals = {"records": 0, "enriched": 0, "failed": 0, "shards": 0}
    missing: list[int] = []
    for shard in range(int(event["shard_count"])):
        try:
            key = f"{source}/{execution_id}/shard-{shard}.json"
            records = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["records"]
        except s3.exceptions.NoSuchKey:
            missing.append(shard)  # a shard that failed within the tolerated failures: nothing to enrich
            continue
        counts = enrich(records, client)
        s3.put_object(
            Bucket=bucket,
            Key=f"{target}/{execution_id}/shard-{shard}.json",
            Body=json.dumps({"records": records}, sort_keys=True).encode(),
            ContentType="application/json",
        )
        totals = {k: totals[k] + counts.get(k, 0) for k in totals}
        totals["shards"] += 1
    totals["requests"] = client.requests
    totals["missing"] = listed(missing)
    log.info("weather enrichment done", **totals)
    return totals


def listed(numbers: list[int], bound: int = 2048) -> str:
    """Shard numbers as text within ``bound`` characters (the answer's size must not grow with the
    data, conf/pipeline.py): the rest counted, never listed."""
    text = ", ".join(map(str, numbers)) or "none"
    if len(text) <= bound:
        return text
    cut = text[: bound - 40].rsplit(", ", 1)[0]
    return f"{cut} and {len(numbers) - cut.count(', ') - 1} more"
