"""HTTP endpoints for orchestrators: /healthz (alive), /readyz (working), /metrics (Prometheus).

Served from a daemon thread. It never touches the Kafka or Redis clients (they are not
thread-safe); it reads what the worker's loop last reported through `Readiness`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from framedrift.worker.ops import metrics
from framedrift.worker.ops.metrics import REGISTRY


@dataclass
class Readiness:
    """What the worker loop last saw: ready when Kafka polled lately, Redis answered,
    partitions are owned and none of them is stalled (a state write refused, alerts not
    published)."""

    poll_stale_after_s: float
    last_poll: float = 0.0  # monotonic time of the last successful poll
    redis_ok: bool = False
    partitions: int = 0
    # partition -> why it is not moving, until a checkpoint of it succeeds again
    stalled: dict[int, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def polled(self) -> None:
        with self._lock:
            self.last_poll = time.monotonic()
        metrics.LAST_SUCCESSFUL_POLL.set(time.time())

    def set_redis(self, ok: bool) -> None:
        with self._lock:
            self.redis_ok = ok

    def set_partitions(self, count: int) -> None:
        with self._lock:
            self.partitions = count

    def set_stalled(self, partition: int, reason: str) -> None:
        with self._lock:
            self.stalled[partition] = reason

    def clear_stalled(self, partitions: Iterable[int]) -> None:
        with self._lock:
            for partition in partitions:
                self.stalled.pop(partition, None)

    def problems(self) -> list[str]:
        with self._lock:
            found = []
            if time.monotonic() - self.last_poll > self.poll_stale_after_s:
                found.append("kafka: no successful poll lately")
            if not self.redis_ok:
                found.append("redis: last operation failed or none yet")
            if self.partitions == 0:
                found.append("no partitions assigned")
            for partition, reason in sorted(self.stalled.items()):
                found.append(f"partition {partition}: {reason}")
            return found


class _Handler(BaseHTTPRequestHandler):
    readiness: Readiness

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, "text/plain", b"ok\n")
        elif self.path == "/readyz":
            problems = self.readiness.problems()
            body = json.dumps({"ready": not problems, "problems": problems}).encode() + b"\n"
            self._reply(503 if problems else 200, "application/json", body)
        elif self.path == "/metrics":
            self._reply(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        else:
            self._reply(404, "text/plain", b"not found\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would drown the worker's own log


def serve_health(host: str, port: int, readiness: Readiness) -> ThreadingHTTPServer:
    handler = type("HealthHandler", (_Handler,), {"readiness": readiness})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
