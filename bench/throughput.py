"""Throughput and latency of the worker, against the model alone, measured in one run.

    python -m bench.throughput [--sample-model artifacts/sample-model.pt]
                               [--camera-model artifacts/camera-fleet-64-strided.pt]

Two workloads, each from the model alone to the worker end to end:

1. The 28×28 sample model (Fashion-MNIST, PNG events in JSON):
   - model only: prepared tensors through the autoencoder, per-image error included,
     the ceiling for this model on this machine;
   - end to end, by batch size: a backlog on the real broker, drained by one
     `framedrift worker` process (decode, score, detectors, Redis checkpoint, commit),
     timed from its first commit to its last, so start-up and group join are excluded;
   - end to end with 10 and with 10,000 sources, once each has been seen (its state
     made and kept), Redis memory per source, and the size of one source's state;
   - latency at half of capacity, on servers of its own: events sent at a steady rate,
     each timed from its send to the commit that covers it (alerts are published before
     that commit, so this bounds event-to-alert), p50 and p99.
2. Camera frames, 640×480 JPEG from the camera-fleet simulator (24 cameras):
   - decoding and frame signals per frame, by frame size, whole and as the worker
     decodes (reduced above 1280 pixels);
   - model only, for the seed's and the strided architecture at 64×64×3;
   - end to end into the strided frame model (`framedrift evaluate`'s fleet model,
     trained here on first use), with one and with two worker processes.

Prints tables, writes bench/results/throughput.json and bench/figures/throughput.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis
import torch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from PIL import Image

from framedrift.deploy.local_servers import LocalServers
from framedrift.producers.camera_fleet import CameraFleet, encode_jpeg
from framedrift.producers.camera_stream import CameraStreamPlan, camera_records
from framedrift.producers.datasets import SAMPLE_DATA_DIR, load_images
from framedrift.producers.events import KafkaRecord, image_event_record
from framedrift.producers.stream import event_id, source_ids
from framedrift.schemas.events import ImagePayload
from framedrift.worker.detection.frame_quality import frame_signals
from framedrift.worker.evaluation.fleet import DEFAULT_FLEET_MODEL, FleetSize, fleet_model
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.autoencoder import (
    AutoencoderConfig,
    ConvAutoencoder,
    reconstruction_error,
)
from framedrift.worker.stream.decoding import DecodingLimits, decode_image

RESULTS = Path("bench/results/throughput.json")
FIGURE = Path("bench/figures/throughput.png")
PARTITIONS = 4
SAMPLE_EVENTS = 20_000
BATCH_SIZES = (64, 256, 1024)
SOURCE_COUNTS = (10, 10_000)
LATENCY_SECONDS = 20.0
# 24 cameras: kafka-python's partitioner puts them 7, 6, 6 and 5 on the 4 partitions, so
# two workers share the frames about evenly (8 cameras fall 5, 1, 1, 1: one of two
# workers then had three quarters of the frames, and the pair measured that worker).
CAMERAS = 24
CAMERA_FRAMES = 12_000  # 500 per camera: past a 128-frame warm-up for most of them
# Camera frame sizes the decode bench measures, (width, height).
FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


@torch.inference_mode()
def model_only(model: ConvAutoencoder, inputs: torch.Tensor, batch_size: int) -> float:
    """Images per second through `model`, per-image error included; the best of 3 passes."""
    model.eval()
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for chunk in inputs.split(batch_size):
            reconstruction_error(model(chunk)[0], chunk)
        best = max(best, _rate(len(inputs), time.perf_counter() - started))
    return best


def frame_models_only(batch_size: int = 64) -> dict[str, float]:
    """Colour 64×64 images per second through each architecture (untrained weights: the
    cost does not depend on them)."""
    torch.manual_seed(0)
    inputs = torch.rand(512, 3, 64, 64)
    rates = {}
    for architecture in ("seed", "strided"):
        config = AutoencoderConfig(height=64, width=64, channels=3, architecture=architecture)
        rates[architecture] = model_only(ConvAutoencoder(config), inputs, batch_size)
    return rates


def camera_frame_reading(repeats: int = 15) -> dict[str, dict[str, float]]:
    """Per camera JPEG frame (quality 85) on one core: milliseconds to decode it in full
    and compute its frame signals, against the worker's decoding (reduced above twice
    `JPEG_DECODED_LONGEST_SIDE`) and the same signals."""
    fake_payload = ImagePayload(encoding="jpeg", data="")
    limits = DecodingLimits(max_record_bytes=1 << 26, max_image_pixels=4096 * 4096)
    results = {}
    for width, height in FRAME_SIZES:
        frame = next(CameraFleet(1, seed=0, frame_size=(width, height)).frames(0, start=5000))
        data = encode_jpeg(frame, quality=85)

        def whole(data: bytes = data) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as image:
                return np.asarray(image)  # RGB already, as the worker takes it

        def as_the_worker(data: bytes = data) -> np.ndarray:
            return decode_image(data, fake_payload, limits)

        timings = {}
        for name, decode in (("whole_ms", whole), ("worker_ms", as_the_worker)):
            frame_signals(decode())  # warm: the first call pays for allocations
            started = time.perf_counter()
            for _ in range(repeats):
                frame_signals(decode())
            timings[name] = 1e3 * (time.perf_counter() - started) / repeats
        results[f"{width}x{height}"] = timings
    return results


def sample_records(
    images: np.ndarray, sources: int, total: int, first: int = 0
) -> Iterator[KafkaRecord]:
    """`total` PNG events in JSON from the `first`-th on, the sources in turn, each its
    next image."""
    names = source_ids(sources)
    now = datetime.now(UTC)
    for index in range(first, first + total):
        source = names[index % sources]
        yield image_event_record(
            images[index % len(images)], source, event_id(source, index // sources), now, "json"
        )


class Bench:
    """Local broker and Redis, backlogs on topics, and worker processes draining them."""

    def __init__(self, servers: LocalServers) -> None:
        self.servers = servers
        self.redis = redis.Redis.from_url(servers.redis_url)
        self.runs = 0

    def topic(self, name: str, records: Iterable[KafkaRecord], rate: float | None = None) -> dict:
        """A topic of `PARTITIONS` partitions holding `records`; with `rate`, sent at that
        many a second. Returns each record's (partition, offset, send time)."""
        self.servers.create_topics({name: PARTITIONS})
        producer = KafkaProducer(
            bootstrap_servers=self.servers.bootstrap_servers,
            acks="all",
            linger_ms=0 if rate else 20,
            batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
        )
        sent, started = [], time.monotonic()
        for count, record in enumerate(records, start=1):
            future = producer.send(name, key=record.key, value=record.value, headers=record.headers)
            sent.append((future, time.monotonic()))
            if rate and (ahead := count / rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
        producer.flush()
        producer.close()
        return {
            "events": len(sent),
            "sends": [(f.get().partition, f.get().offset, at) for f, at in sent],
        }

    def start_workers(self, topic: str, model: Path, count: int, **settings: str) -> list:
        self.runs += 1
        environment = {
            **os.environ,
            "FRAMEDRIFT_BOOTSTRAP_SERVERS": self.servers.bootstrap_servers,
            "FRAMEDRIFT_REDIS_URL": self.servers.redis_url,
            "FRAMEDRIFT_INPUT_TOPIC": topic,
            "FRAMEDRIFT_ALERTS_TOPIC": "bench-alerts",
            "FRAMEDRIFT_DEAD_LETTER_TOPIC": "bench-dlq",
            "FRAMEDRIFT_GROUP_ID": f"bench-{self.runs}",
            "FRAMEDRIFT_STATE_PREFIX": f"bench{self.runs}",
            "FRAMEDRIFT_MODEL_PATH": str(model),
            "FRAMEDRIFT_STATE_HMAC_KEY": secrets.token_hex(16),
            "FRAMEDRIFT_LOG_FORMAT": "json",
            "FRAMEDRIFT_HEALTH_PORT": "0",
            **{f"FRAMEDRIFT_{name.upper()}": value for name, value in settings.items()},
        }
        return [
            subprocess.Popen(
                [sys.executable, "-m", "framedrift.worker.cli", "worker"],
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]

    def watcher(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.servers.bootstrap_servers,
            group_id=f"bench-{self.runs}",
            enable_auto_commit=False,
        )

    def drain(
        self,
        topic: str,
        total: int,
        model: Path,
        workers: int = 1,
        warm_up: int = 1,
        **settings: str,
    ):
        """Events per second of `workers` processes draining a backlog of `total` events,
        timed from the first commit that covers `warm_up` events."""
        processes = self.start_workers(topic, model, workers, **settings)
        watcher = self.watcher()
        try:
            first_commit, first_count, deadline = None, 0, time.monotonic() + 900
            while time.monotonic() < deadline:
                committed = _committed(watcher, topic)
                if committed >= warm_up and first_commit is None:
                    first_commit, first_count = time.monotonic(), committed
                if committed >= total:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"{workers} worker(s) did not drain {topic} within 900 s")
            finished = time.monotonic()
        finally:
            watcher.close()
            _stop(processes)
        assert first_commit is not None
        return _rate(total - first_count, finished - first_commit)

    def latency(
        self,
        topic: str,
        warm_up: Iterable[KafkaRecord],
        records: Iterable[KafkaRecord],
        rate: float,
        model: Path,
    ) -> dict[str, float]:
        """Each event's time from its send to the commit that covers it, at `rate` a second,
        once the worker has committed the `warm_up` events (it has joined its group)."""
        self.servers.create_topics({topic: PARTITIONS})
        processes = self.start_workers(topic, model, 1)
        watcher = self.watcher()
        commits: list[tuple[float, dict[int, int]]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                offsets = {
                    p: watcher.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)
                }
                commits.append((time.monotonic(), offsets))
                time.sleep(0.01)

        try:
            warmed = self.topic(topic, warm_up)["events"]
            deadline = time.monotonic() + 120
            while _committed(watcher, topic) < warmed:
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not take its first events within 120 s")
                time.sleep(0.1)
            thread = threading.Thread(target=watch)
            thread.start()
            sent = self.topic(topic, records, rate)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if commits and sum(commits[-1][1].values()) >= warmed + sent["events"]:
                    break
                time.sleep(0.1)
            done.set()
            thread.join()
        finally:
            watcher.close()
            _stop(processes)
        latencies = []
        for partition, offset, sent_at in sent["sends"]:
            # The first sample whose committed offset (the next to read) lies past this event.
            covered = next((at for at, offsets in commits if offsets[partition] > offset), None)
            if covered is None:
                raise RuntimeError(f"event {partition}:{offset} was never committed")
            latencies.append(max(0.0, covered - sent_at))
        return {
            "rate_per_s": rate,
            "events": sent["events"],
            "p50_ms": 1e3 * float(np.percentile(latencies, 50)),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99)),
        }

    def used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def state_blob_kb(self) -> float:
        """The average size of one source's state, as the last run's workers stored it."""
        keys = self.redis.scan_iter(f"bench{self.runs}:*:source:*", count=1000)
        sizes = [self.redis.strlen(key) for key in keys]
        return float(np.mean(sizes)) / 1024 if sizes else float("nan")


def _committed(consumer: KafkaConsumer, topic: str) -> int:
    return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def sample_workload(bench: Bench, model: Path) -> dict[str, Any]:
    artifact = ModelArtifact.load(model)
    clean = load_images(SAMPLE_DATA_DIR / "fashion-mnist-stream-images-idx3-ubyte.gz")
    from framedrift.worker.model.preprocessing import dataset_to_model_input

    inputs = dataset_to_model_input(clean.images, artifact.preprocessing)
    results: dict[str, Any] = {
        "model_only_images_per_s": model_only(artifact.build_model(), inputs, 256)
    }
    print(f"sample model only: {results['model_only_images_per_s']:.0f} images/s", flush=True)

    by_batch = {}
    bench.topic("sample-16", sample_records(clean.images, 16, SAMPLE_EVENTS))
    for batch_size in BATCH_SIZES:
        rate = bench.drain("sample-16", SAMPLE_EVENTS, model, batch_size=str(batch_size))
        by_batch[batch_size] = rate
        print(f"sample end to end, batch {batch_size}: {rate:.0f} events/s", flush=True)
    results["end_to_end_by_batch_size"] = by_batch

    by_sources = {}
    for sources in SOURCE_COUNTS:
        # Timed once every source has been seen (its state created and kept): the steady
        # state of a fleet, not its first day.
        topic = f"sample-{sources}-sources"
        warm_up = max(SOURCE_COUNTS)
        bench.topic(topic, sample_records(clean.images, sources, warm_up + SAMPLE_EVENTS))
        memory_before = bench.used_memory()
        rate = bench.drain(topic, warm_up + SAMPLE_EVENTS, model, warm_up=warm_up)
        by_sources[sources] = {
            "events_per_s": rate,
            "redis_used_memory_per_source_kb": (bench.used_memory() - memory_before)
            / sources
            / 1024,
            "state_blob_kb": bench.state_blob_kb(),
        }
        print(f"sample end to end, {sources} sources: {by_sources[sources]}", flush=True)
    results["end_to_end_by_sources"] = by_sources

    capacity = by_batch[256]
    # On servers of its own: the drains above leave Redis a gigabyte of append-only file
    # (fsynced at every write, rewritten in the background), whose rewrite stalled writes
    # for hundreds of milliseconds. That is the bench's history, not the worker's latency.
    with LocalServers.start() as fresh:
        results["latency_at_half_capacity"] = Bench(fresh).latency(
            "sample-latency",
            sample_records(clean.images, 16, 64),
            sample_records(clean.images, 16, int(capacity / 2 * LATENCY_SECONDS), first=64),
            capacity / 2,
            model,
        )
    print(f"sample latency: {results['latency_at_half_capacity']}", flush=True)
    return results


def camera_workload(bench: Bench, model: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "frame_reading_ms": camera_frame_reading(),
        "frame_models_only_images_per_s": frame_models_only(),
    }
    print(f"frame models only: {results['frame_models_only_images_per_s']}", flush=True)
    plan = CameraStreamPlan(
        cameras=CAMERAS, frames_per_camera=CAMERA_FRAMES // CAMERAS, frame_size=(640, 480)
    )
    started = time.monotonic()
    bench.topic("cameras-640x480", camera_records(plan))
    print(f"camera frames made and sent in {time.monotonic() - started:.0f} s", flush=True)
    by_workers = {}
    for workers in (1, 2):
        # The machine's cores shared out between the workers' reader threads; the model
        # takes its default (`Settings.model_threads`: the cores the readers leave, or 1).
        readers = str(max(1, (os.cpu_count() or 1) // workers))
        by_workers[workers] = bench.drain(
            "cameras-640x480",
            CAMERA_FRAMES,
            model,
            workers,
            source_kind="cameras",
            warmup_frames="128",
            reader_threads=readers,
        )
        print(f"camera end to end, {workers} worker(s): {by_workers[workers]:.0f} frames/s")
    results["end_to_end_by_workers"] = by_workers
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    sample, camera = results["sample"], results["camera"]
    figure, (by_batch, by_sources, by_workers) = pyplot.subplots(1, 3, figsize=(13, 4))
    batches = sample["end_to_end_by_batch_size"]
    by_batch.plot(list(batches), list(batches.values()), "o-", label="end to end")
    by_batch.axhline(sample["model_only_images_per_s"], color="grey", ls="--", label="model only")
    by_batch.set(
        xscale="log",
        xlabel="batch size (events)",
        ylabel="events/s",
        title="28×28 sample model, 16 sources",
    )
    by_batch.legend()
    sources = sample["end_to_end_by_sources"]
    by_sources.bar(
        [f"{count:,}" for count in sources], [r["events_per_s"] for r in sources.values()]
    )
    by_sources.set(xlabel="sources", ylabel="events/s", title="28×28 sample model, batch 256")
    workers = camera["end_to_end_by_workers"]
    by_workers.bar(
        [f"{count} worker" + ("s" if count > 1 else "") for count in workers],
        list(workers.values()),
    )
    by_workers.set(ylabel="frames/s", title="640×480 JPEG into the strided 64×64 model")
    figure.suptitle(results["machine"])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-model", type=Path, default=Path("artifacts/sample-model.pt"))
    parser.add_argument("--camera-model", type=Path, default=DEFAULT_FLEET_MODEL)
    args = parser.parse_args(argv)
    if not args.sample_model.is_file():
        print(f"no model at {args.sample_model}: `make bench` trains it, or `framedrift train`")
        return 2
    if not args.camera_model.is_file():
        print(f"training the camera-fleet model into {args.camera_model} (about a minute)")
        fleet_model(FleetSize(), args.camera_model)

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}",
        "torch_threads": torch.get_num_threads(),
    }
    with LocalServers.start() as servers:
        bench = Bench(servers)
        results["sample"] = sample_workload(bench, args.sample_model)
        results["camera"] = camera_workload(bench, args.camera_model)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, FIGURE)
    print_tables(results)
    print(f"wrote {RESULTS} and {FIGURE}")
    return 0


def print_tables(results: dict[str, Any]) -> None:
    sample, camera = results["sample"], results["camera"]
    model_rate = sample["model_only_images_per_s"]
    print(f"\n{results['machine']}")
    print("28×28 sample model (PNG events in JSON, 16 sources)")
    print(f"  model only                              {model_rate:9.0f} images/s")
    for batch_size, rate in sample["end_to_end_by_batch_size"].items():
        print(
            f"  end to end, batch {batch_size:<5}                {rate:9.0f} events/s "
            f"({rate / model_rate:.2f} of model only)"
        )
    for sources, row in sample["end_to_end_by_sources"].items():
        print(
            f"  end to end, {sources:>6,} sources             {row['events_per_s']:9.0f} events/s; "
            f"Redis {row['redis_used_memory_per_source_kb']:.1f} kB/source, "
            f"state {row['state_blob_kb']:.1f} kB"
        )
    latency = sample["latency_at_half_capacity"]
    print(
        f"  latency at {latency['rate_per_s']:.0f} events/s: p50 {latency['p50_ms']:.0f} ms, "
        f"p99 {latency['p99_ms']:.0f} ms (send to commit)"
    )
    print("640×480 JPEG camera frames")
    for architecture, rate in camera["frame_models_only_images_per_s"].items():
        print(f"  model only, {architecture:<8} 64×64×3              {rate:9.0f} images/s")
    for workers, rate in camera["end_to_end_by_workers"].items():
        print(f"  end to end, {workers} worker process(es)        {rate:9.0f} frames/s")
    print("  decode + frame signals, one core (ms): whole -> as the worker")
    for size, timing in camera["frame_reading_ms"].items():
        print(f"    {size:<10} {timing['whole_ms']:7.1f} -> {timing['worker_ms']:6.1f}")


if __name__ == "__main__":
    sys.exit(main())
