"""A loopback stand-in for the Open-Meteo archive API, for runs and tests without the internet.

Same request and response shape as ``/v1/archive?latitude=..&longitude=..&start_date=..
&end_date=..&hourly=..&timezone=UTC``, including several locations at once (comma-separated
``latitude``/``longitude`` lists answered with a JSON list, one object per location, as Open-Meteo
does: https://openmeteo.substack.com/p/weather-data-for-multiple-locations); values are computed
deterministically from place and hour. Faults to inject: ``failures=N`` makes the first N requests
answer ``failure_status`` (503: an outage; 429 comes with ``Retry-After``), ``latency`` delays every
answer, ``throttle_rate`` answers that fraction of requests 429 with ``Retry-After: retry_after``
(seeded, so a run is repeatable).

    python -m pipeline_ops.weather_server [--port 8765] [--latency-ms 150] [--throttle-rate 0.05]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"


def day(lat: float, lon: float, fields: list[str]) -> dict[str, list]:
    """A place's 24 hourly values of each field: they depend on place and hour of day only, so
    every day of a range is this one (computing each hour of a month of 50 places was ~0.12 CPU s
    an answer, which on a small machine made this stand-in, not the client, set a benchmark's pace)."""
    samples = []
    for hour in range(24):
        phase = math.sin((hour - 6) / 24 * 2 * math.pi)
        samples.append(
            {
                "temperature_2m": round(12 - abs(lat - 60) * 0.4 + 6 * phase, 1),
                "precipitation": round(max(0.0, math.cos(lon + hour)) * 0.8, 1),
                "wind_speed_10m": round(8 + 4 * abs(math.sin(lat + hour)), 1),
                "cloud_cover": int(50 + 40 * math.sin(lon * hour)),
            }
        )
    return {field: [sample.get(field) for sample in samples] for field in fields}


def hourly(lat: float, lon: float, start: date, end: date, fields: list[str]) -> dict:
    """A place's hourly series from start to end."""
    days = (end - start).days + 1
    return {
        "time": list(stamps(start, end)),
        **{field: values * days for field, values in day(lat, lon, fields).items()},
    }


def answer_text(lat: float, lon: float, start: date, end: date, fields: list[str]) -> str:
    """``json.dumps`` of a place's answer (its :func:`hourly` series), built from one encoded day
    repeated: encoding ~150,000 numbers a month of 50 places was this stand-in's next CPU cost."""
    days = (end - start).days + 1
    series = [f'"time": {stamps_text(start, end)}']
    for field, values in day(lat, lon, fields).items():
        series.append(f"{json.dumps(field)}: [{', '.join([json.dumps(values)[1:-1]] * days)}]")
    place = f'"latitude": {json.dumps(lat)}, "longitude": {json.dumps(lon)}, "timezone": "UTC"'
    return f'{{{place}, "hourly": {{{", ".join(series)}}}}}'


@functools.lru_cache(maxsize=64)
def stamps(start: date, end: date) -> tuple[str, ...]:
    """The hours from start to end, ``YYYY-MM-DDTHH:00`` (the same for every place of a request)."""
    days = (end - start).days + 1
    return tuple(f"{(start + timedelta(days=d)).isoformat()}T{hour:02d}:00" for d in range(days) for hour in range(24))


@functools.lru_cache(maxsize=64)
def stamps_text(start: date, end: date) -> str:
    return json.dumps(list(stamps(start, end)))


class Handler(BaseHTTPRequestHandler):
    server_version = "local-weather/1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        server: Server = self.server  # type: ignore[assignment]
        if server.latency:
            time.sleep(server.latency)
        status = server.fault()
        if status:
            reason = "temporarily unavailable" if status >= 500 else "too many requests" if status == 429 else "refused"
            self._send(status, {"error": True, "reason": reason}, server.retry_after if status == 429 else None)
            return
        try:
            places = list(zip(*(map(float, query[k].split(",")) for k in ("latitude", "longitude")), strict=True))
            start, end = date.fromisoformat(query["start_date"]), date.fromisoformat(query["end_date"])
            if end < start:
                raise ValueError("end_date before start_date")
            fields = query.get("hourly", "temperature_2m").split(",")
            answers = [answer_text(lat, lon, start, end, fields) for lat, lon in places]
        except (KeyError, ValueError) as exc:
            self._send(400, {"error": True, "reason": f"bad request: {exc}"})
            return
        with server.lock:
            server.requests += 1
            server.location_days += len(places) * ((end - start).days + 1)
            server.api_keys.add(query.get("apikey"))
        self._send(200, f"[{', '.join(answers)}]" if len(answers) > 1 else answers[0])

    def _send(self, status: int, body: dict | str, retry_after: int | None = None) -> None:
        """``body`` as JSON (a str: already JSON)."""
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """One line per request on stderr (a run's log: ``.state/emulator/weather-server.log``)."""
        if getattr(self.server, "quiet", False):
            return
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.address_string()} {format % args}\n")
        sys.stderr.flush()


class Server(ThreadingHTTPServer):
    """The first ``failures`` requests are answered ``failure_status``, then a ``throttle_rate``
    share 429; every answer waits ``latency`` s first; ``requests`` counts the 200 answers,
    ``location_days`` the days of every location they held (Open-Meteo weighs a call by
    locations x days), ``api_keys`` the ``apikey`` values they came with (None: none)."""

    # A busy machine accepts late: with the default backlog of 5, a burst of lookups overflows it,
    # the kernel drops SYNs and clients wait in connect back-off past their time-outs.
    request_queue_size = 128

    daemon_threads = True

    def __init__(
        self,
        port: int,
        failures: int = 0,
        failure_status: int = 503,
        *,
        latency: float = 0.0,
        throttle_rate: float = 0.0,
        retry_after: int = 1,
        seed: int = 2026,
    ) -> None:
        super().__init__((HOST, port), Handler)
        self.failures_left, self.failure_status, self.requests, self.location_days = failures, failure_status, 0, 0
        self.latency, self.throttle_rate, self.retry_after = latency, throttle_rate, retry_after
        self.lock, self.random, self.throttled = threading.Lock(), random.Random(seed), 0  # noqa: S311 - fault injection
        self.api_keys: set[str | None] = set()

    def fault(self) -> int | None:
        """The status of an injected failure for this request, or None to answer it."""
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return self.failure_status
            if self.throttle_rate and self.random.random() < self.throttle_rate:
                self.throttled += 1
                return 429
        return None


def start(port: int = 0, failures: int = 0, failure_status: int = 503, **faults: float) -> Server:
    """Serve in a daemon thread; ``server.server_address[1]`` is the port, :func:`stop` stops it.
    The first ``failures`` requests are answered ``failure_status``; ``faults``: ``latency``,
    ``throttle_rate``, ``retry_after`` (see :class:`Server`)."""
    server = Server(port, failures, failure_status, **faults)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def listening(port: int) -> bool:
    """Whether anything accepts connections on this loopback port."""
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def spawn(
    port: int, wait_seconds: float = 10.0, log: Path | None = None, args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """The server in a process of its own (a run's lookups must not wait for the caller's GIL:
    in a busy test worker an in-process server answered in seconds, past the client's time-outs).
    Its stderr goes to ``log`` (appended), so an exit can be explained; ``args``: the fault options."""
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    sink = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_ops.weather_server", "--port", str(port), *args],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=sink,
    )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if listening(port):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the loopback weather server did not start on port {port}")


def stop(server: Server | subprocess.Popen) -> None:
    """Stop serving and close the socket: a server only shut down keeps its port bound and
    listening with nobody accepting, so the next run sees the port taken and its requests hang."""
    if isinstance(server, subprocess.Popen):
        server.terminate()
        server.wait(timeout=10)
        return
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every answer")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    parser.add_argument("--retry-after", type=int, default=1, help="the 429's Retry-After, seconds")
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first N requests --failure-status")
    parser.add_argument("--failure-status", type=int, default=503)
    parser.add_argument("--quiet", action="store_true", help="no line per request")
    args = parser.parse_args()
    server = Server(
        args.port,
        args.fail_first,
        args.failure_status,
        latency=args.latency_ms / 1000,
        throttle_rate=args.throttle_rate,
        retry_after=args.retry_after,
    )
    server.quiet = args.quiet
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
