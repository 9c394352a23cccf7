"""A loopback stand-in for the Open-Meteo archive API, for runs and tests without the internet.

Same request and response shape as ``/v1/archive?latitude=..&longitude=..&start_date=..
&end_date=..&hourly=..&timezone=UTC``; values are computed deterministically from place and
hour. ``start(failures=N)`` makes the first N requests answer 503 (retry tests), or another
``failure_status``.

    python -m pipeline_ops.weather_server [--port 8765]
"""

from __future__ import annotations

import argparse
import json
import math
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


def hourly(lat: float, lon: float, start: date, end: date, fields: list[str]) -> dict:
    times, values = [], {f: [] for f in fields}
    day = start
    while day <= end:
        for hour in range(24):
            times.append(f"{day.isoformat()}T{hour:02d}:00")
            phase = math.sin((hour - 6) / 24 * 2 * math.pi)
            sample = {
                "temperature_2m": round(12 - abs(lat - 60) * 0.4 + 6 * phase, 1),
                "precipitation": round(max(0.0, math.cos(lon + hour)) * 0.8, 1),
                "wind_speed_10m": round(8 + 4 * abs(math.sin(lat + hour)), 1),
                "cloud_cover": int(50 + 40 * math.sin(lon * hour)),
            }
            for field in fields:
                values[field].append(sample.get(field))
        day += timedelta(days=1)
    return {"time": times, **values}


class Handler(BaseHTTPRequestHandler):
    server_version = "local-weather/1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.server.failures_left > 0:  # type: ignore[attr-defined]
            self.server.failures_left -= 1  # type: ignore[attr-defined]
            status = self.server.failure_status  # type: ignore[attr-defined]
            self._send(status, {"error": True, "reason": "temporarily unavailable" if status >= 500 else "refused"})
            return
        try:
            body = {
                "latitude": float(query["latitude"]),
                "longitude": float(query["longitude"]),
                "timezone": "UTC",
                "hourly": hourly(
                    float(query["latitude"]),
                    float(query["longitude"]),
                    date.fromisoformat(query["start_date"]),
                    date.fromisoformat(query["end_date"]),
                    query.get("hourly", "temperature_2m").split(","),
                ),
            }
        except (KeyError, ValueError) as exc:
            self._send(400, {"error": True, "reason": f"bad request: {exc}"})
            return
        self.server.requests += 1  # type: ignore[attr-defined]
        self._send(200, body)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """One line per request on stderr (a run's log: ``.state/emulator/weather-server.log``)."""
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.address_string()} {format % args}\n")
        sys.stderr.flush()


class Server(ThreadingHTTPServer):
    """The first ``failures`` requests are answered ``failure_status``; ``requests`` counts answers."""

    # A busy machine accepts late: with the default backlog of 5, a burst of lookups overflows it,
    # the kernel drops SYNs and clients wait in connect back-off past their time-outs.
    request_queue_size = 128

    def __init__(self, port: int, failures: int = 0, failure_status: int = 503) -> None:
        super().__init__((HOST, port), Handler)
        self.failures_left, self.failure_status, self.requests = failures, failure_status, 0


def start(port: int = 0, failures: int = 0, failure_status: int = 503) -> Server:
    """Serve in a daemon thread; ``server.server_address[1]`` is the port, :func:`stop` stops it.
    The first ``failures`` requests are answered ``failure_status``."""
    server = Server(port, failures, failure_status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def listening(port: int) -> bool:
    """Whether anything accepts connections on this loopback port."""
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def spawn(port: int, wait_seconds: float = 10.0, log: Path | None = None) -> subprocess.Popen:
    """The server in a process of its own (a run's lookups must not wait for the caller's GIL:
    in a busy test worker an in-process server answered in seconds, past the client's time-outs).
    Its stderr goes to ``log`` (appended), so an exit can be explained."""
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    sink = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_ops.weather_server", "--port", str(port)],
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
    args = parser.parse_args()
    server = Server(args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
