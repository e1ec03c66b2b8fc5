"""The worker's settings: the one home of every port, topic, threshold and limit.

Read from the environment (prefix `FRAMEDRIFT_`) and an optional `.env` file. A bad
value fails at start-up with a message that names the setting (`settings_from_env`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framedrift.worker.detection.parameters import (
    DetectorParameters,
    SourceKind,
    latent_window_in_strides,
)

ENV_PREFIX = "FRAMEDRIFT_"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it by its environment variable."""


def parse_bootstrap_servers(value: str) -> list[tuple[str, int]]:
    """A `host:port,host:port` list -> (host, port) pairs, or ValueError naming the bad entry.

    An IPv6 host is written in brackets and comes back without them.

    >>> parse_bootstrap_servers("kafka-0:9092, [::1]:9093")
    [('kafka-0', 9092), ('::1', 9093)]
    """
    addresses = []
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, got {server!r}")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # Kafka
    bootstrap_servers: str = Field(
        "localhost:9092", min_length=1, description="Comma-separated host:port list."
    )
    input_topic: str = Field("image-events", min_length=1)
    alerts_topic: str = Field("drift-alerts", min_length=1)
    dead_letter_topic: str = Field("image-events-dlq", min_length=1)
    # Empty: no status topic. Off by default: the worker creates no topic, and publishing
    # to one that does not exist would hold every partition back.
    status_topic: str = ""
    # `framedrift fleet` (`stream/fleet_grouping.py`): where fleet incidents go, which
    # labels group sources, how many sources make a storm, within how many seconds.
    fleet_topic: str = Field("fleet-incidents", min_length=1)
    fleet_group_by: str = Field(
        "site", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*(,[a-zA-Z_][a-zA-Z0-9_]*)*$"
    )
    fleet_threshold: int = Field(5, ge=2, le=100_000)
    fleet_window_s: float = Field(300.0, gt=0.0, le=7 * 24 * 3600.0)
    group_id: str = Field("framedrift", min_length=1)
    # 6 s is Apache Kafka's smallest allowed session timeout. With it a member joins a
    # Tansu group in ~3 s; at kafka-python's 10 s default the join takes ~23 s there.
    session_timeout_ms: int = Field(6000, ge=1000, le=300_000)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle for the brokers' certificates.")
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="Client key (mutual TLS).")

    # Redis
    redis_url: str = Field("redis://localhost:6379/0", pattern=r"^(redis|rediss|unix)://")
    state_prefix: str = Field("framedrift", min_length=1, pattern=r"^[^\s:]+$")
    state_cache_sources: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description="Source states a worker keeps in memory as it last saved them, so that "
        "its next batches need not read them from Redis; about 60 kB each (600 MB at "
        "10,000), the least recently saved dropped first. 0: read every state from Redis.",
    )
    state_hmac_key: SecretStr | None = Field(
        None, description="Signs detector state in Redis; at least 16 characters."
    )
    redis_ssl_ca_certs: Path | None = Field(None, description="CA bundle for rediss:// URLs.")
    retry_backoff_max_s: float = Field(
        5.0, gt=0, le=300, description="Longest wait between retries while Kafka or Redis is down."
    )

    # Model and scoring
    model_path: Path = Path("artifacts/model.pt")
    torch_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="CPU threads for the model's own operations. 0: the cores this process "
        "may use less the reader threads, at least 1 (`model_threads`).",
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu",
        description="Where the model runs: 'cuda' (a GPU; start-up fails without one), "
        "'auto' (a GPU when there is one), 'cpu'. Decoding and the detectors stay on the CPU.",
    )
    reader_threads: int = Field(
        2,
        ge=1,
        le=64,
        description="Threads that decode records and read their frame signals, while the "
        "model scores the frames already read: about one per core.",
    )

    # Batching
    batch_size: int = Field(256, ge=1, le=10_000)
    poll_timeout_ms: int = Field(500, ge=1, le=60_000)
    fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=29_000,  # kafka-python requires it below its request timeout, 30 s
        description="Longest a fetch waits on the broker for records (Kafka's fetch.max.wait.ms, "
        "500 by default): at half capacity on the bench, 100 instead of 500 cut the p99 "
        "event-to-commit latency from 370-670 ms to 260 ms.",
    )

    # Detectors (see worker/detection/) and their calibration (detection/calibration.py)
    ert: int = Field(
        100_000,
        ge=1_000,
        description="Expected events between false alarms on a clean source, per question "
        "(out of domain, changed); every calibrated threshold is set to it (with "
        "FRAMEDRIFT_SOURCE_KIND=cameras, the changed question's only).",
    )
    source_kind: SourceKind = Field(
        "samples",
        description="What a source is. 'cameras': each source is a fixed camera sending its "
        "own scene in time order; the out-of-domain question is the coverage test only. "
        "'samples': a clean source's events are independent draws of images like the "
        "training data (an upload pipeline); the sequential tests against the model's "
        "baseline run too.",
    )
    warmup_frames: int = Field(
        2048,
        ge=128,
        le=131_072,
        multiple_of=128,
        description="Frames each source takes to learn its own normal before the changed "
        "question tests it (a multiple of 128: every warmup/128-th frame joins its "
        "128-frame reference, which then spans this many frames).",
    )
    incident_hold_down_s: float = Field(
        300.0,
        ge=0.0,
        le=7 * 24 * 3600.0,
        description="Seconds of a source's own event time in which no detector of a "
        "question fires or stays in its episode before that question's open incident "
        "resolves: long enough that a fault which flickers (a smudge in changing light) "
        "stays one incident.",
    )
    stopped_after_s: float = Field(
        60.0,
        gt=0.0,
        le=7 * 24 * 3600.0,
        description="The least silence, in seconds of its partition's event time, after "
        "which a source is stopped (one that usually pauses longer waits five times its "
        "longest usual pause).",
    )
    window_size: int = Field(
        200, ge=10, description="W: events in the KS, relative-increase and coverage windows."
    )
    test_stride: int = Field(
        50,
        ge=1,
        description="Run the windowed tests (KS, relative increase, latent mix, coverage) every "
        "this many events.",
    )
    latent_window: int = Field(
        1000, ge=100, description="Events in the latent-prototype mix window (a stride multiple)."
    )
    cusum_slack: float = Field(
        0.5, gt=0, le=3, description="CUSUM slack k: half the shift (in σ) it is tuned to."
    )
    adwin_delta: float = Field(0.0002, gt=0, lt=1, description="ADWIN's confidence parameter.")
    outlier_quantile: float = Field(
        0.999, gt=0.5, lt=1, description="Baseline quantile above which an image is an outlier."
    )

    # Input limits
    max_record_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(4096 * 4096, ge=64)

    # Health and metrics (HTTP: /healthz, /readyz, /metrics); port 0 turns it off
    health_host: str = "0.0.0.0"
    health_port: int = Field(8080, ge=0, le=65535)

    # Logging
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    stats_interval_s: float = Field(10.0, gt=0)

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        parse_bootstrap_servers(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _binary_replies(cls, value: str) -> str:
        # State blobs are bytes: a client that decodes replies to text cannot read them,
        # and would turn the checkpoint's refusals into strings the store never expects.
        options = parse_qs(urlsplit(value).query)
        if any(
            flag.lower() not in ("0", "false", "no") for flag in options.get("decode_responses", [])
        ):
            raise ValueError("decode_responses is not supported: the state store reads bytes")
        return value

    @field_validator("state_hmac_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        topics = [self.input_topic, self.alerts_topic, self.dead_letter_topic, self.fleet_topic]
        topics += [self.status_topic] if self.status_topic else []
        if len(set(topics)) != len(topics):
            raise ValueError(
                "input_topic, alerts_topic, dead_letter_topic, fleet_topic and status_topic "
                "must differ"
            )
        return self

    @model_validator(mode="after")
    def _sasl_complete(self) -> Settings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"{ENV_PREFIX}{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{self.security_protocol} needs {', '.join(missing)}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "redis_ssl_ca_certs"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: no file at {path}")
        return self

    @model_validator(mode="after")
    def _latent_window_in_strides(self) -> Settings:
        if not latent_window_in_strides(self.latent_window, self.test_stride):
            raise ValueError(
                f"{ENV_PREFIX}LATENT_WINDOW ({self.latent_window}) must be a multiple of "
                f"{ENV_PREFIX}TEST_STRIDE ({self.test_stride})"
            )
        return self

    def detector_parameters(self) -> DetectorParameters:
        return DetectorParameters(
            ert=self.ert,
            window_size=self.window_size,
            test_stride=self.test_stride,
            latent_window=self.latent_window,
            cusum_slack=self.cusum_slack,
            adwin_delta=self.adwin_delta,
        )

    def kafka_client_options(self) -> dict[str, object]:
        """Connection and security options shared by every Kafka client the worker makes."""
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            assert self.sasl_password is not None  # checked by _sasl_complete
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name) is not None:
                options[name] = str(getattr(self, name))
        return options

    def model_threads(self) -> int:
        """The model's CPU threads: `torch_threads`, or by default the cores left beside the
        reader threads, which run beside the model and keep their own cores busy.

        Why not PyTorch's own choice (every core): its idle threads spin waiting for the
        next operation, on cores the readers, Redis and the broker need. On the bench's 2
        cores, one model thread instead of two took 26% less CPU an event with 10,000
        sources and gave 674 and 629 against 567 and 553 events/s; camera frames 221
        against 209 frames/s; 10 sources the same within 3% (README, Throughput).
        """
        if self.torch_threads:
            return self.torch_threads
        return max(1, len(os.sched_getaffinity(0)) - self.reader_threads)

    def redis_client_options(self) -> dict[str, object]:
        """Keyword arguments for `redis.Redis.from_url` beside the URL (AUTH travels in it)."""
        options: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        if self.redis_ssl_ca_certs is not None:
            options["ssl_ca_certs"] = str(self.redis_ssl_ca_certs)
        return options

    def hmac_key(self) -> bytes:
        """The state signing key; the worker cannot start without it."""
        if self.state_hmac_key is None:
            raise SettingsError(
                f"{ENV_PREFIX}STATE_HMAC_KEY is required: it signs detector state in Redis "
                "(at least 16 characters, e.g. `openssl rand -hex 32`)"
            )
        return self.state_hmac_key.get_secret_value().encode()


def settings_from_env(**overrides: object) -> Settings:
    """Settings from the environment, or a SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "settings"
            variable = f"{ENV_PREFIX}{field.upper()}" if item["loc"] else field
            problems.append(f"{variable}: {item['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
