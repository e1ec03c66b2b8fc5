"""`framedrift demo`: the whole product on one machine, with real servers, in about two minutes.

1. Train a small colour model on clean frames of seven of the demo's eight fixed cameras
   (once; cached in ./artifacts/).
2. Start the local broker and Redis (`deploy/local_servers.py`), create the topics.
3. Start `framedrift worker` as a separate process, as it would run in production, set
   for fixed cameras (`FRAMEDRIFT_SOURCE_KIND=cameras`) with a short warm-up.
4. Stream the cameras (`producers/camera_stream.py`: photographs from scikit-image's
   wheel, sensor noise, shake, moving objects, 320×240 JPEG at 5 frames a second of
   event time): six get a fault at frame 450 that is repaired at frame 600, one stays
   clean, and one looks at a scene the model never saw. An operator's commands travel
   in the stream (`OPERATOR_SCRIPT`): one camera is silenced for maintenance from the
   start, and another's new look is accepted as its normal after its repair.
5. Print incidents as they open, grow and resolve on the alerts topic; stop when every
   event is committed.
6. Summarise: events processed, each camera's incidents (what was wrong and where, how
   soon they opened, how soon after the repair they resolved), false alarms, and the
   fleet's status as `framedrift status` prints it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from framedrift.deploy.local_servers import LocalServers, free_port, require_server_binaries
from framedrift.producers.camera_fleet import (
    ColourCast,
    Defocus,
    Knocked,
    Occlusion,
    Smudge,
    frames_over_the_day,
)
from framedrift.producers.camera_stream import CameraStreamPlan, camera_records
from framedrift.producers.events import KafkaRecord
from framedrift.producers.stream import send_records, sequence_of, source_ids
from framedrift.schemas.alerts import DriftAlert, IncidentEvent
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.stream.fleet_status import SourceStatus, render, source_status
from framedrift.worker.stream.operator_commands import command_record, new_command
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import RedisStateStore

ARTIFACT_DIR = Path("artifacts")
DEMO_MODEL = ARTIFACT_DIR / "demo-cameras-32.pt"
WORKER_LOG = ARTIFACT_DIR / "demo-worker.log"
INPUT_PARTITIONS = 4
# Pinned for the worker (not read from the environment), so the demo's own progress
# watcher and Redis read-back look at the worker's group and keys.
DEMO_GROUP_ID = "framedrift-demo"
DEMO_STATE_PREFIX = "framedrift-demo"
PLAN = CameraStreamPlan(
    cameras=8,
    frames_per_camera=750,
    faults={
        "camera-001": Defocus(),
        "camera-002": Knocked(),
        "camera-003": Smudge(corner="top-right"),
        "camera-004": Occlusion(centre=(0.3, 0.7)),
        "camera-005": ColourCast(towards="blue"),
        "camera-006": Defocus(),
    },
    onset=450,
    fault_until=600,
    frame_interval_s=0.2,  # 5 frames a second
)
# Seconds of a camera's event time without an alarm before its incident resolves: 50
# frames at the demo's frame rate.
HOLD_DOWN_S = 10.0
# What the demo's operator says, and before which frame of the cameras' stream:
# camera-006 is in maintenance from the start (its fault must raise nothing); camera-005's
# colour cast is repaired at frame 600, but its own normal stopped learning while the
# cast lasted and the evening fell meanwhile, so its shadows stay darker than the normal
# it remembers: the operator accepts what it shows now as its new normal.
SILENCED_CAMERA, ACCEPTED_CAMERA = "camera-006", "camera-005"
ACCEPT_AT = 680
OPERATOR_SCRIPT = (
    (0, "silence", SILENCED_CAMERA, "maintenance: lens replacement"),
    (ACCEPT_AT, "accept", ACCEPTED_CAMERA, "colour cast fixed; the evening light is normal"),
)
SILENCE_FOR = timedelta(hours=1)
# The model is trained without this camera. An out-of-domain alert for it is no false
# alarm, but none is due: its frames lie 0.65 of a spread beyond the model's range, where
# the coverage test asks for 1.0 (`coverage.py`). Its own normal is learnt like any
# other camera's, and nothing about it changes.
UNSEEN_CAMERA = "camera-007"
# Each camera's own normal: 256 frames (one of every two goes into its 128-frame
# reference), so that the changed question is on 194 frames before the faults start.
WARMUP_FRAMES = 256
ERT = 1_000_000  # frames per camera between false alarms, per question
MODEL_INPUT = 32  # pixels a side: the demo's model is small, to train in seconds
TRAINING_FRAMES = 1_400
_DEADLINE_S = 300.0
_QUIET_AFTER_DONE_S = 2.0


def scenario(source: str) -> str:
    """What the demo did to `source`: its fault's name, `unseen scene` or `clean`."""
    fault = PLAN.faults.get(source)
    if fault is not None:
        return f"{fault.name}, silenced" if source == SILENCED_CAMERA else fault.name
    return "unseen scene" if source == UNSEEN_CAMERA else "clean"


def _train_demo_model() -> None:
    from framedrift.worker.model.autoencoder import AutoencoderConfig
    from framedrift.worker.model.preprocessing import Preprocessing, resized_for_model
    from framedrift.worker.model.training import TrainingPlan, train_autoencoder
    from framedrift.worker.ops.settings import settings_from_env

    sources = source_ids(PLAN.cameras)
    trained_on = [index for index, source in enumerate(sources) if source != UNSEEN_CAMERA]
    print(f"Training the demo's autoencoder on clean frames of {len(trained_on)} cameras...")
    config = AutoencoderConfig(
        height=MODEL_INPUT, width=MODEL_INPUT, channels=3, architecture="strided"
    )
    model_input = partial(resized_for_model, preprocessing=Preprocessing.for_model(config))
    artifact = train_autoencoder(
        frames_over_the_day(PLAN.fleet(), trained_on, TRAINING_FRAMES, model_input),
        config,
        TrainingPlan(epochs=8, batch_size=64),
        settings_from_env(ert=ERT).detector_parameters(),  # calibrated as the worker runs
        source_description=f"the demo's cameras {trained_on}: {TRAINING_FRAMES} clean frames",
    )
    artifact.save(DEMO_MODEL)
    print(f"  model {artifact.model_version}: validation error mean {artifact.baseline.mean:.4f}")


def _committed_total(consumer: KafkaConsumer, topic: str) -> int:
    total = 0
    for partition in range(INPUT_PARTITIONS):
        committed = consumer.committed(TopicPartition(topic, partition))
        total += committed or 0
    return total


@dataclass
class DemoIncident:
    """One incident as the demo's subscriber saw it: its transitions, in order."""

    events: list[IncidentEvent]

    @property
    def source_id(self) -> str:
        return self.events[0].source_id

    @property
    def question(self) -> str:
        return self.events[0].question

    @property
    def opened_frame(self) -> int:
        return frame_of(self.events[0])

    @property
    def resolved_frame(self) -> int | None:
        last = self.events[-1]
        return frame_of(last) if last.transition == "resolved" else None

    @property
    def resolution(self) -> str | None:
        last = self.events[-1]
        return last.resolution if last.transition == "resolved" else None

    @property
    def verdict(self) -> str:
        """`expected` (a changed incident opened while its camera's fault lasted; an
        out-of-domain one on the unseen camera), else `FALSE ALARM` (on the silenced
        camera, anything)."""
        if self.source_id == SILENCED_CAMERA:
            return "FALSE ALARM"
        if self.source_id in PLAN.faults and self.question == "changed":
            assert PLAN.fault_until is not None
            if PLAN.onset <= self.opened_frame < PLAN.fault_until:
                return "expected"
        if self.source_id == UNSEEN_CAMERA and self.question == "out_of_domain":
            return "expected"
        return "FALSE ALARM"


# The command that resolves an incident, by the resolution it gives.
_COMMAND_OF = {"accepted": "accept", "rolled_back": "rollback", "reset": "reset"}


def frame_of(event: IncidentEvent) -> int:
    """The camera's frame a transition happened at: its trigger's, or for one an
    operator's command made, the frame the script sent the command before."""
    command = _COMMAND_OF.get(event.resolution or "")
    if command is None:
        return sequence_of(event.trigger.event_id)
    return next(
        frame
        for frame, kind, source, _ in OPERATOR_SCRIPT
        if (kind, source) == (command, event.source_id)
    )


def incidents_of(events: list[IncidentEvent]) -> list[DemoIncident]:
    """The events grouped by incident, copies re-sent after a crash dropped (by event id)."""
    incidents: dict[str, DemoIncident] = {}
    seen: set[str] = set()
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        incidents.setdefault(event.incident_id, DemoIncident([])).events.append(event)
    return list(incidents.values())


def evidence(alert: DriftAlert | None) -> str:
    """What an alert says moved, and where: a changed alert its signals (in the camera's
    own standard deviations) and tiles; an out-of-domain one its place in the baseline."""
    if alert is None:
        return "(evidence unreadable)"
    if alert.question == "changed":
        signals = ", ".join(f"{c.signal} {c.deviation_sd:+.0f}σ" for c in alert.changes[:3])
        more = f" and {len(alert.changes) - 3} more" if len(alert.changes) > 3 else ""
        if alert.extent == "local":
            return f"{signals}{more}; local, tiles " + " ".join(
                tile.removeprefix("tile_") for tile in alert.tiles
            )
        if alert.tiles:
            return f"{signals}{more}; {alert.extent}, {len(alert.tiles)} tiles"
        return f"{signals}{more}"
    if alert.detector == "coverage":
        return (
            f"typical frame {alert.statistic:.1f} spreads beyond the 99th percentile of the "
            "model's validation images"
        )
    return f"mean error {alert.error_change_pct:+.1f}% against the model's baseline"


def _print_event(event: IncidentEvent, incident: DemoIncident, started: float) -> None:
    frame = frame_of(event)
    happened = scenario(event.source_id)
    if event.transition == "opened":
        when = f"frame {frame}"
        if event.source_id in PLAN.faults and incident.verdict == "expected":
            when += f", {frame - PLAN.onset} after the {happened} began"
        said = evidence(event.first_evidence)
    elif event.transition == "updated":
        when = f"frame {frame}"
        said = f"now {', '.join(event.detectors)}; signals {', '.join(event.signals) or '-'}"
    else:
        when = f"frame {frame}"
        if event.source_id in PLAN.faults and PLAN.fault_until is not None:
            when += f", {frame - PLAN.fault_until} after the repair"
        said = f"{event.resolution}, open {event.duration_s:.0f} s of the camera's time"
    print(
        f"[{time.monotonic() - started:6.1f}s] {event.source_id} {event.transition:<8} "
        f"{event.question:<13} {when}: {said}"
        + ("" if incident.verdict == "expected" else "  FALSE ALARM")
    )


def run_demo(retrain: bool = False) -> int:
    require_server_binaries()  # before a minute of training, not after
    if retrain or not DEMO_MODEL.is_file():
        _train_demo_model()
    total_events = PLAN.cameras * PLAN.frames_per_camera
    total_records = total_events + len(OPERATOR_SCRIPT)

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
            "FRAMEDRIFT_SOURCE_KIND": "cameras",
            "FRAMEDRIFT_WARMUP_FRAMES": str(WARMUP_FRAMES),
            "FRAMEDRIFT_ERT": str(ERT),
            "FRAMEDRIFT_INCIDENT_HOLD_DOWN_S": str(HOLD_DOWN_S),
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
                events = _stream_and_watch(servers, topics, total_records)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
        processed, fleet = _read_back_from_redis(servers.redis_url, hmac_key)
    _print_peak_throughput()
    outcome = _summarise(incidents_of(events), total_events, processed)
    print("\nThe fleet now, as `framedrift status` prints it:")
    print(render(fleet))
    return outcome


def _read_back_from_redis(
    redis_url: str, hmac_key: str
) -> tuple[dict[str, int], list[SourceStatus]]:
    """Frames counted per camera, and each camera's status, from the worker's states."""
    store = RedisStateStore(
        redis.Redis.from_url(redis_url),
        StateCodec(hmac_key.encode()),
        DEMO_STATE_PREFIX,
        DEMO_GROUP_ID,
        ModelArtifact.load(DEMO_MODEL).model_version,
    )
    states = store.load_all_sources()
    counted = {source: state.stats.count for source, state in states.items()}
    return counted, [source_status(source, state) for source, state in states.items()]


def _with_operator_commands(records: Iterator[KafkaRecord]) -> Iterator[KafkaRecord]:
    """The cameras' frames with `OPERATOR_SCRIPT`'s commands before their frames."""
    script = sorted(OPERATOR_SCRIPT)
    for index, record in enumerate(records):
        frame = index // PLAN.cameras
        while script and script[0][0] <= frame:
            _, kind, source, reason = script.pop(0)
            command = new_command(
                kind,  # type: ignore[arg-type]
                source,
                reason,
                "demo-operator",
                SILENCE_FOR if kind == "silence" else None,
            )
            print(f"[operator] sends `{kind} {source}` (before its frame {frame}): {reason}")
            yield KafkaRecord(*command_record(command))
        yield record


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
    servers: LocalServers, topics: dict[str, str], total_records: int
) -> list[IncidentEvent]:
    print(
        f"Streaming {PLAN.cameras * PLAN.frames_per_camera} frames from {PLAN.cameras} "
        "fixed cameras "
        f"({PLAN.frame_size[0]}×{PLAN.frame_size[1]} JPEG); each learns its own normal "
        f"over its first {WARMUP_FRAMES} frames; from frame {PLAN.onset} to "
        f"{PLAN.fault_until}: "
        + ", ".join(f"{source} {fault.name}" for source, fault in PLAN.faults.items())
        + f"; {UNSEEN_CAMERA}: a scene the model never saw; clean: "
        + ", ".join(s for s in source_ids(PLAN.cameras) if scenario(s) == "clean")
    )
    producer = KafkaProducer(bootstrap_servers=servers.bootstrap_servers, acks="all", linger_ms=10)
    production = threading.Thread(
        target=send_records,
        args=(producer, topics["input"], _with_operator_commands(camera_records(PLAN))),
        kwargs={"total": total_records, "rate": PLAN.rate, "show_progress": False},
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
    events: list[IncidentEvent] = []
    done_at: float | None = None
    last_report = started
    while time.monotonic() - started < _DEADLINE_S:
        for batch in alerts_consumer.poll(timeout_ms=300).values():
            for record in batch:
                event = IncidentEvent.model_validate_json(record.value)
                events.append(event)
                (incident,) = (i for i in incidents_of(events) if i.events[-1] is event)
                _print_event(event, incident, started)
        if time.monotonic() - last_report > 1.0:
            last_report = time.monotonic()
            committed = _committed_total(progress, topics["input"])
            if committed >= total_records and done_at is None:
                done_at = time.monotonic()
                print(
                    f"[{done_at - started:6.1f}s] all {total_records} records (frames and "
                    "commands) processed and committed"
                )
        if done_at is not None and time.monotonic() - done_at > _QUIET_AFTER_DONE_S:
            break
    else:
        print(f"Stopped after {_DEADLINE_S:.0f} s without every event committed; see {WORKER_LOG}")
    production.join(timeout=10)
    producer.close()
    alerts_consumer.close()
    progress.close()
    return events


def _summarise(incidents: list[DemoIncident], total_events: int, processed: dict[str, int]) -> int:
    by_camera: dict[str, list[DemoIncident]] = defaultdict(list)
    for incident in incidents:
        by_camera[incident.source_id].append(incident)
    false_alarms = [incident for incident in incidents if incident.verdict != "expected"]
    print("\nSummary")
    print(
        f"  frames streamed: {total_events} ({PLAN.frames_per_camera} per camera); "
        f"counted by the worker in Redis: {sum(processed.values())}"
    )
    print(f"  incidents: {len(incidents)}, false alarms: {len(false_alarms)}")
    print(
        f"  {'camera':<11} {'what happened':<20} {'opened':>6} {'resolved':>13}  "
        "what the incidents said"
    )
    failed = []
    for source in source_ids(PLAN.cameras):
        expected = [i for i in by_camera[source] if i.verdict == "expected"]
        opened = resolved = "-"
        if source == SILENCED_CAMERA:
            if by_camera[source]:
                failed.append(source)
        elif source in PLAN.faults:
            assert PLAN.fault_until is not None
            if len(expected) == 1 and expected[0].resolved_frame is not None:
                opened = f"+{expected[0].opened_frame - PLAN.onset}"
                resolved = f"+{expected[0].resolved_frame - PLAN.fault_until}"
                if expected[0].resolution != "recovered":
                    resolved += f" {expected[0].resolution}"
            else:
                failed.append(source)
                opened = "MISSED" if not expected else opened
                resolved = "OPEN" if expected and expected[0].resolved_frame is None else resolved
        said = "; ".join(
            f"{incident.question} ({', '.join(incident.events[-1].detectors)}): "
            f"{evidence(incident.events[0].first_evidence)}"
            for incident in by_camera[source]
        )
        print(
            f"  {source:<11} {scenario(source):<20} {opened:>6} {resolved:>13}  {said or 'nothing'}"
        )
    print(
        "  opened: frames after the fault began; resolved: frames after it was repaired "
        f"(the hold-down is {HOLD_DOWN_S:.0f} s, {HOLD_DOWN_S / PLAN.frame_interval_s:.0f} "
        "frames), or by the operator's accept. Not as expected (one incident opened and "
        "resolved per fault, nothing from the silenced camera): "
        + (", ".join(failed) if failed else "none")
    )
    complete = sum(processed.values()) == total_events
    return 0 if complete and not failed and not false_alarms else 1
