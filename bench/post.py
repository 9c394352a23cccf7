"""Post-fan-out benchmark: do WeatherEnrichment and WriteParquet fit the largest execution? (``make bench-post``)

Generates the stage2 shard files of an execution of ``--images`` images (default 275,000, the
largest manifest the fan-out accepts in prod) over ``--sites`` sites and ``--days`` days, in the
profile's shard size, and runs both steps' own handlers on them, each in a fresh process (its
peak RSS is its own; boto3 is imported and a client made, as in Lambda), with the function's
time-out as the context's remaining time. S3 is served as in ``make bench-stage``: a local folder
through the calls the handlers make, each call after ``--s3-latency-ms``. The weather provider is
the loopback server (``pipeline_ops/weather_server.py``) in a process of its own, every answer
after ``--latency-ms`` (default 150) and ``--throttle-rate`` of requests (default 5 %) answered
429 with ``Retry-After: 1``. WeatherEnrichment runs twice: cold (empty site-day cache), then warm
(must make no request). Prints per step the wall time as a fraction of the function's time-out,
its CPU time at the share of a vCPU Lambda gives its memory setting (a floor on its wall time
there) as a fraction of the time-out, peak memory as a fraction of its memory setting, weather
requests, Parquet files and bytes; the last line ``worst X`` is the largest fraction (target <= 0.5).

    python bench/post.py [--images 275000] [--sites 500] [--days 120] [--env prod]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "bench-post"
PROCESSED, CURATED = "bench-processed", "bench-curated"
EXECUTION = "bench-post"
SPECIES = ("red_fox", "roe_deer", "moose", "lynx", "badger", "hare", "wolverine", "capercaillie")
TARGET = 0.5
# Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
MB_PER_VCPU = 1769


class FolderS3:
    """The S3 calls the handlers make, over a local folder; every call waits ``latency`` first."""

    class exceptions:
        class NoSuchKey(Exception):
            pass

    def __init__(self, root: Path, latency: float) -> None:
        self.root, self.latency = root, latency
        self.puts: dict[tuple[str, str], int] = {}
        self.gets, self.lock = 0, threading.Lock()

    def get_object(self, Bucket: str, Key: str) -> dict:
        time.sleep(self.latency)
        path = self.root / Bucket / Key
        with self.lock:
            self.gets += 1
        if not path.is_file():
            raise self.exceptions.NoSuchKey(Key)
        return {"Body": io.BytesIO(path.read_bytes())}

    def put_object(self, Bucket: str, Key: str, Body: bytes | io.IOBase, **_: object) -> dict:
        time.sleep(self.latency)
        path = self.root / Bucket / Key
        path.parent.mkdir(parents=True, exist_ok=True)
        data = Body if isinstance(Body, bytes) else Body.read()
        path.write_bytes(data)
        with self.lock:
            self.puts[Bucket, Key] = len(data)
        return {}


class Context:
    """A Lambda context: the time left counts down from the function's time-out."""

    def __init__(self, timeout_seconds: int) -> None:
        self.deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def function_settings(env: str) -> tuple[dict, dict, int]:
    """Each step's memory and time-out, the weather settings and the shard size of ``env``."""
    sys.path.insert(0, str(REPO))
    from conf.profile import load_profile

    profile = load_profile(env)
    specs = {n: profile.functions.specs[n].model_dump() for n in ("weather_enrichment", "write_parquet")}
    return specs, profile.weather.model_dump(), profile.workflow.images_per_shard


def generate(images: int, sites: int, days: int, per_shard: int) -> tuple[int, dict[str, int]]:
    """stage2 shard files (cached by their parameters); returns the shard count and the number
    of sites each calendar month needs (the weather requests' bound derives from it)."""
    folder = WORK / "s3" / PROCESSED / "stage2" / EXECUTION
    marker = folder / "params.json"
    params = {"images": images, "sites": sites, "days": days, "per_shard": per_shard}
    shards = -(-images // per_shard)
    if marker.is_file() and json.loads(marker.read_text())["params"] == params:
        return shards, json.loads(marker.read_text())["sites_per_month"]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(2026)  # noqa: S311 - test data
    places = [(round(58 + rng.random() * 10, 4), round(5 + rng.random() * 20, 4)) for _ in range(sites)]
    start = datetime(2026, 5, 1, tzinfo=UTC)
    chunks = set()
    for shard in range(shards):
        records = []
        for index in range(shard * per_shard, min(images, (shard + 1) * per_shard)):
            site = rng.randrange(sites)
            moment = start + timedelta(days=rng.randrange(days), seconds=rng.randrange(86400))
            chunks.add((site, moment.strftime("%Y-%m")))
            detections = [
                {
                    "bbox": [round(rng.random() * 0.5, 3), round(rng.random() * 0.5, 3), 0.8, 0.9],
                    "category": "animal",
                    "score": round(0.5 + rng.random() / 2, 3),
                    "species": rng.choice(SPECIES),
                    "species_score": round(rng.random(), 3),
                }
                for _ in range(rng.choice((0, 0, 1, 1, 1, 2)))
            ]
            records.append(
                {
                    "key": f"images/site-{site}/IMG_{index:07d}.JPG",
                    "site_id": f"site-{site}",
                    "lat": places[site][0],
                    "lon": places[site][1],
                    "captured_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "detections": detections,
                }
            )
        (folder / f"shard-{shard}.json").write_text(json.dumps({"records": records}))
    sites_per_month = dict(sorted(Counter(month for _, month in chunks).items()))
    marker.write_text(json.dumps({"params": params, "sites_per_month": sites_per_month}))
    return shards, sites_per_month


def load_handler(name: str):
    sys.path.insert(0, str(REPO / "lambda_src" / "_shared"))
    spec = importlib.util.spec_from_file_location(f"handler_{name}", REPO / "lambda_src" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def worker(step: str, shards: int, timeout: int, s3_latency: float) -> dict:
    """One step's handler in this process, as Lambda would call it."""
    import boto3

    boto3.client("s3", region_name="eu-north-1")  # in Lambda the handler makes one: count its memory
    module = load_handler(step)
    s3 = FolderS3(WORK / "s3", s3_latency)
    started = time.monotonic()
    result = module.handler({"execution_id": EXECUTION, "shard_count": shards}, Context(timeout), s3=s3)
    seconds = time.monotonic() - started
    curated = {k: v for (bucket, k), v in s3.puts.items() if bucket == CURATED}
    return {
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_seconds": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        "result": {k: v for k, v in result.items() if k != "objects"},
        "files": len(curated),
        "bytes": sum(curated.values()),
        "s3_gets": s3.gets,
        "s3_puts": len(s3.puts),
    }


def run_step(step: str, shards: int, spec: dict, s3_latency: float, environment: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", step, str(shards), str(spec["timeout_seconds"]), str(s3_latency)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **environment},
    )
    if proc.returncode:
        raise SystemExit(f"error: bench worker {step} failed:\n{proc.stderr.strip()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/post.py", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=275_000)
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--env", default="prod", help="profile whose function settings count (default prod)")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="weather answer latency (default 150)")
    parser.add_argument("--throttle-rate", type=float, default=0.05, help="share of weather requests answered 429")
    parser.add_argument("--s3-latency-ms", type=float, default=25.0, help="wait before each S3 call (default 25)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        step, shards, timeout, latency = args.worker
        print(json.dumps(worker(step, int(shards), int(timeout), float(latency))))
        return 0
    if min(args.images, args.sites, args.days) < 1:
        print("error: --images, --sites and --days must be at least 1", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from pipeline_ops import weather_server

    specs, weather, per_shard = function_settings(args.env)
    began = time.monotonic()
    shards, sites_per_month = generate(args.images, args.sites, args.days, per_shard)
    # Requests answered in full: one per month per sites_per_request sites, whatever the days.
    batches = sum(-(-n // weather["sites_per_request"]) for n in sites_per_month.values())
    print(
        f"{args.images} images, {args.sites} sites, {args.days} days, {shards} shards of {per_shard} "
        f"(generated/reused in {time.monotonic() - began:.0f} s); {args.env} settings; S3 latency "
        f"{args.s3_latency_ms:g} ms; weather {args.latency_ms:g} ms, {args.throttle_rate:.0%} 429s; "
        f"{os.cpu_count()} CPUs"
    )
    for folder in ("weather", "weather-cache"):
        shutil.rmtree(WORK / "s3" / PROCESSED / folder, ignore_errors=True)
    shutil.rmtree(WORK / "s3" / CURATED, ignore_errors=True)
    port = free_port()
    faults = ("--latency-ms", str(args.latency_ms), "--throttle-rate", str(args.throttle_rate), "--quiet")
    server = weather_server.spawn(port, log=WORK / "weather-server.log", args=faults)
    environment = {
        "PROCESSED_BUCKET": PROCESSED,
        "CURATED_BUCKET": CURATED,
        "CACHE_PREFIX": "weather-cache",
        "WEATHER_BASE_URL": f"http://127.0.0.1:{port}/v1/archive",
        "WEATHER_CONNECT_TIMEOUT": str(weather["connect_timeout_seconds"]),
        "WEATHER_READ_TIMEOUT": str(weather["read_timeout_seconds"]),
        "WEATHER_MAX_RETRIES": str(weather["max_retries"]),
        "WEATHER_GIVE_UP_AFTER": str(weather["give_up_after"]),
        "WEATHER_MAX_IN_FLIGHT": str(weather["max_in_flight"]),
        "WEATHER_SITES_PER_REQUEST": str(weather["sites_per_request"]),
        "WEATHER_MAX_RETRY_AFTER": str(weather["max_retry_after_seconds"]),
        "LOG_LEVEL": "WARNING",
    }
    try:
        weather_env = {**environment, "INPUT_PREFIX": "stage2", "OUTPUT_PREFIX": "weather"}
        cold = run_step(
            "weather_enrichment", shards, specs["weather_enrichment"], args.s3_latency_ms / 1000, weather_env
        )
        warm = run_step(
            "weather_enrichment", shards, specs["weather_enrichment"], args.s3_latency_ms / 1000, weather_env
        )
    finally:
        weather_server.stop(server)
    parquet_env = {**environment, "INPUT_PREFIX": "weather", "OUTPUT_PREFIX": "detections"}
    parquet = run_step("write_parquet", shards, specs["write_parquet"], args.s3_latency_ms / 1000, parquet_env)
    fractions = []
    for label, step, run in (
        ("weather_enrichment (cold cache)", "weather_enrichment", cold),
        ("weather_enrichment (warm cache)", "weather_enrichment", warm),
        ("write_parquet", "write_parquet", parquet),
    ):
        spec, result = specs[step], run["result"]
        time_share, memory_share = run["seconds"] / spec["timeout_seconds"], run["peak_rss_mib"] / spec["memory_mb"]
        # Its CPU time at the function's share of a vCPU: a floor on its wall time in Lambda.
        vcpus = min(1.0, spec["memory_mb"] / MB_PER_VCPU)
        cpu_share = run["cpu_seconds"] / vcpus / spec["timeout_seconds"]
        fractions += [time_share, memory_share, cpu_share]
        if step == "weather_enrichment":
            what = (
                f"weather requests {result['requests']} ({result['failed_attempts']} failed attempts; bound "
                f"{batches} answered: {sum(sites_per_month.values())} site-months, {len(sites_per_month)} months) for "
                f"{result['site_days']} site-days "
                f"({result['from_cache']} from the cache), enriched {result['enriched']}, failed {result['failed']}"
            )
        else:
            what = f"Parquet files {run['files']}, {run['bytes'] / 1e6:.1f} MB, rows {result['rows']}"
        print(
            f"{label}: wall {run['seconds']:.1f} s = {time_share:.2f} of its {spec['timeout_seconds']} s time-out, "
            f"CPU {run['cpu_seconds']:.1f} s, at Lambda's {vcpus:.2f} vCPU >= {run['cpu_seconds'] / vcpus:.0f} s = "
            f"{cpu_share:.2f}; peak {run['peak_rss_mib']:.0f} MiB = {memory_share:.2f} of {spec['memory_mb']} MB; "
            f"{what}; "
            f"S3 {run['s3_gets']} GETs, {run['s3_puts']} PUTs"
        )
    problems = []
    if warm["result"]["requests"]:
        problems.append(f"the warm rerun made {warm['result']['requests']} weather requests (expected none)")
    answered = cold["result"]["requests"] - cold["result"]["failed_attempts"]
    if answered > batches:
        problems.append(f"{answered} weather requests answered for {batches} (month, sites_per_request) batches")
    if cold["result"]["failed"]:
        problems.append(f"{cold['result']['failed']} records without weather")
    for problem in problems:
        print(f"problem: {problem}")
    print(f"worst {max(fractions):.2f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
