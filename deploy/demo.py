"""`framedrift demo`: the whole product on one machine, with real servers, in about a minute.

1. Train a small model on the Fashion-MNIST sample shipped with framedrift (once; cached
   in ./artifacts/).
2. Start the local broker and Redis (`deploy/local_servers.py`), create the topics.
3. Start `framedrift worker` as a separate process, as it would run in production.
4. Stream events from several cameras, with drift switched on mid-stream for some.
5. Print alerts as they arrive on the alerts topic; stop when every event is committed.
6. Summarise: events processed, alerts per source and detector, detection delays,
   false alarms on clean sources.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from framedrift.deploy.local_servers import LocalServers, free_port, require_server_binaries
from framedrift.producers.datasets import SAMPLE_DATA_DIR, LabelledImages, load_images
from framedrift.producers.stream import StreamPlan, produce_stream, sequence_of, source_ids
from framedrift.schemas.alerts import DriftAlert
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import RedisStateStore

ARTIFACT_DIR = Path("artifacts")
DEMO_MODEL = ARTIFACT_DIR / "demo-model.pt"
WORKER_LOG = ARTIFACT_DIR / "demo-worker.log"
INPUT_PARTITIONS = 4
# Pinned for the worker (not read from the environment), so the demo's own progress
# watcher and Redis read-back look at the worker's group and keys.
DEMO_GROUP_ID = "framedrift-demo"
DEMO_STATE_PREFIX = "framedrift-demo"
PLAN = StreamPlan(
    sources=8,
    events_per_source=1500,
    drift={
        "camera-001": "noise",
        "camera-002": "covariate",
        "camera-003": "novel",
        "camera-004": "occlusion",
        "camera-005": "brightness",
    },
    drift_at=750,
    rate=3000.0,
    seed=7,
)
_DEADLINE_S = 180.0
_QUIET_AFTER_DONE_S = 2.0


def _train_demo_model() -> None:
    from framedrift.worker.model.autoencoder import AutoencoderConfig
    from framedrift.worker.model.training import TrainingPlan, train_autoencoder
    from framedrift.worker.ops.settings import settings_from_env

    reference = load_images(SAMPLE_DATA_DIR / "fashion-mnist-reference-images-idx3-ubyte.gz")
    print(f"Training the demo autoencoder on {len(reference)} Fashion-MNIST sample images...")
    artifact = train_autoencoder(
        reference.images,
        AutoencoderConfig(),
        TrainingPlan(epochs=5),
        settings_from_env().detector_parameters(),
        source_description="producers/sample_data (Fashion-MNIST sample)",
    )
    artifact.save(DEMO_MODEL)
    print(f"  model {artifact.model_version}: validation error mean {artifact.baseline.mean:.4f}")


def _committed_total(consumer: KafkaConsumer, topic: str) -> int:
    total = 0
    for partition in range(INPUT_PARTITIONS):
        committed = consumer.committed(TopicPartition(topic, partition))
        total += committed or 0
    return total


def _print_alert(alert: DriftAlert, started: float) -> None:
    sequence = sequence_of(alert.window_last_event.event_id)
    scenario = PLAN.drift.get(alert.source_id, "none")
    when = (
        f"{sequence - PLAN.drift_at} events after the {scenario} onset"
        if scenario != "none" and sequence >= PLAN.drift_at
        else "FALSE ALARM"
    )
    threshold = "none" if alert.threshold is None else f"{alert.threshold:.4f}"  # adwin: none
    # A changed alert says what moved against the camera's own normal; an out-of-domain
    # one how far the error moved from the model's baseline.
    evidence = (
        ", ".join(f"{c.signal} {c.deviation_sd:+.1f}σ" for c in alert.changes[:3])
        if alert.question == "changed"
        else f"mean error {alert.error_change_pct:+.1f}%"
    )
    print(
        f"[{time.monotonic() - started:6.1f}s] ALERT {alert.source_id} {alert.question:<13} "
        f"{alert.detector:<17} statistic {alert.statistic:8.4f} (threshold {threshold})  "
        f"{evidence}  at event #{sequence}: {when}"
    )


def run_demo(retrain: bool = False) -> int:
    require_server_binaries()  # before a minute of training, not after
    if retrain or not DEMO_MODEL.is_file():
        _train_demo_model()
    clean = load_images(SAMPLE_DATA_DIR / "fashion-mnist-stream-images-idx3-ubyte.gz")
    novel = load_images(SAMPLE_DATA_DIR / "mnist-novel-images-idx3-ubyte.gz")
    total_events = PLAN.sources * PLAN.events_per_source

    hmac_key = secrets.token_hex(32)  # a fresh key each run: demo state is throwaway
    health_port = free_port()
    with LocalServers.start() as servers:
        topics = {"input": "image-events", "alerts": "drift-alerts", "dead": "image-events-dlq"}
        servers.create_topics(
            {topics["input"]: INPUT_PARTITIONS, topics["alerts"]: 1, topics["dead"]: 1}
        )
        environment = {
            **os.environ,
            "FRAMEDRIFT_BOOTSTRAP_SERVERS": servers.bootstrap_servers,
            "FRAMEDRIFT_REDIS_URL": servers.redis_url,
            "FRAMEDRIFT_INPUT_TOPIC": topics["input"],
            "FRAMEDRIFT_ALERTS_TOPIC": topics["alerts"],
            "FRAMEDRIFT_DEAD_LETTER_TOPIC": topics["dead"],
            "FRAMEDRIFT_MODEL_PATH": str(DEMO_MODEL),
            "FRAMEDRIFT_STATE_HMAC_KEY": hmac_key,
            "FRAMEDRIFT_GROUP_ID": DEMO_GROUP_ID,
            "FRAMEDRIFT_STATE_PREFIX": DEMO_STATE_PREFIX,
            "FRAMEDRIFT_LOG_FORMAT": "json",
            "FRAMEDRIFT_STATS_INTERVAL_S": "2",
            "FRAMEDRIFT_HEALTH_PORT": str(health_port),
        }
        print(
            f"Broker {servers.bootstrap_servers}, Redis {servers.redis_url}; "
            f"worker log: {WORKER_LOG}; metrics: http://127.0.0.1:{health_port}/metrics"
        )
        WORKER_LOG.parent.mkdir(parents=True, exist_ok=True)
        with WORKER_LOG.open("wb") as worker_log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "framedrift.worker.cli", "worker"],
                env=environment,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            try:
                alerts = _stream_and_watch(servers, topics, clean, novel, total_events)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
        processed = _events_counted_in_redis(servers.redis_url, hmac_key)
    _print_peak_throughput()
    return _summarise(alerts, total_events, processed)


def _events_counted_in_redis(redis_url: str, hmac_key: str) -> dict[str, int]:
    store = RedisStateStore(
        redis.Redis.from_url(redis_url),
        StateCodec(hmac_key.encode()),
        DEMO_STATE_PREFIX,
        DEMO_GROUP_ID,
        ModelArtifact.load(DEMO_MODEL).model_version,
    )
    return {source: state.stats.count for source, state in store.load_all_sources().items()}


def _print_peak_throughput() -> None:
    lines = [
        json.loads(line) for line in WORKER_LOG.read_text().splitlines() if '"throughput"' in line
    ]
    busiest = max(lines, key=lambda line: line["events_per_s"], default=None)
    if busiest and busiest["events_per_s"]:
        print(
            f"Worker peak: {busiest['events_per_s']:.0f} events/s "
            f"(mean batch {busiest['mean_batch_size']:.0f}, lag {busiest['lag']})"
        )


def _stream_and_watch(
    servers: LocalServers,
    topics: dict[str, str],
    clean: LabelledImages,
    novel: LabelledImages,
    total_events: int,
) -> list[DriftAlert]:
    drifted = ", ".join(f"{source} ({scenario})" for source, scenario in PLAN.drift.items())
    clean_sources = [s for s in source_ids(PLAN.sources) if s not in PLAN.drift]
    print(
        f"Streaming {total_events} events from {PLAN.sources} cameras at {PLAN.rate:.0f}/s; drift "
        f"from event #{PLAN.drift_at} on {drifted}; clean: {', '.join(clean_sources)}"
    )
    producer = KafkaProducer(bootstrap_servers=servers.bootstrap_servers, acks="all", linger_ms=10)
    production = threading.Thread(
        target=produce_stream,
        args=(producer, topics["input"], PLAN, clean, novel),
        kwargs={"show_progress": False},
        daemon=True,
    )
    alerts_consumer = KafkaConsumer(
        topics["alerts"],
        bootstrap_servers=servers.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    progress = KafkaConsumer(
        bootstrap_servers=servers.bootstrap_servers,
        group_id=DEMO_GROUP_ID,
        enable_auto_commit=False,
    )
    started = time.monotonic()
    production.start()
    alerts: list[DriftAlert] = []
    done_at: float | None = None
    last_report = started
    while time.monotonic() - started < _DEADLINE_S:
        for batch in alerts_consumer.poll(timeout_ms=300).values():
            for record in batch:
                alert = DriftAlert.model_validate_json(record.value)
                alerts.append(alert)
                _print_alert(alert, started)
        if time.monotonic() - last_report > 1.0:
            last_report = time.monotonic()
            committed = _committed_total(progress, topics["input"])
            if committed >= total_events and done_at is None:
                done_at = time.monotonic()
                print(
                    f"[{done_at - started:6.1f}s] all {total_events} events processed and committed"
                )
        if done_at is not None and time.monotonic() - done_at > _QUIET_AFTER_DONE_S:
            break
    else:
        print(f"Stopped after {_DEADLINE_S:.0f} s without every event committed; see {WORKER_LOG}")
    production.join(timeout=10)
    producer.close()
    alerts_consumer.close()
    progress.close()
    return alerts


def _summarise(alerts: list[DriftAlert], total_events: int, processed: dict[str, int]) -> int:
    per_source: dict[str, Counter] = defaultdict(Counter)
    first_delay: dict[str, int] = {}
    false_alarms: Counter = Counter()
    for alert in alerts:
        per_source[alert.source_id][alert.detector] += 1
        sequence = sequence_of(alert.window_last_event.event_id)
        if alert.source_id in PLAN.drift and sequence >= PLAN.drift_at:
            delay = sequence - PLAN.drift_at
            first_delay[alert.source_id] = min(delay, first_delay.get(alert.source_id, delay))
        else:
            false_alarms[alert.source_id] += 1
    print("\nSummary")
    print(
        f"  events streamed: {total_events} ({PLAN.events_per_source} per camera); "
        f"counted by the worker in Redis: {sum(processed.values())}"
    )
    print(f"  alerts: {len(alerts)}")
    print(f"  {'source':<12} {'scenario':<12} {'first alert after onset':>24}  alerts by detector")
    for source in source_ids(PLAN.sources):
        scenario = PLAN.drift.get(source, "none")
        delay = first_delay.get(source)
        delay_text = (
            f"{delay} events" if delay is not None else ("MISSED" if scenario != "none" else "-")
        )
        detectors = ", ".join(
            f"{name} {count}" for name, count in sorted(per_source[source].items())
        )
        print(f"  {source:<12} {scenario:<12} {delay_text:>24}  {detectors or 'none'}")
    missed = [s for s in PLAN.drift if s not in first_delay]
    print(f"  false alarms (clean sources, or before the onset): {sum(false_alarms.values())}")
    print(
        f"  drifted sources missed: {len(missed)}{' (' + ', '.join(missed) + ')' if missed else ''}"
    )
    complete = sum(processed.values()) == total_events
    return 0 if complete and not missed and not false_alarms else 1
