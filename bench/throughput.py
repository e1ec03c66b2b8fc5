"""Throughput: the worker end to end against the model alone, measured in the same run.

    python -m bench.throughput [--events 20000] [--model artifacts/sample-model.pt]

1. model only: prepared (N, 1, 28, 28) tensors through the autoencoder in batches of
   `batch_size`, per-image error included: the ceiling for this model on this machine;
2. scoring path: decoded uint8 images through preprocessing + model (what one batch
   of the worker pays for scoring);
3. end to end: a backlog of PNG events in JSON on the real broker, drained by one
   `framedrift worker` process (decode, score, detectors, Redis checkpoint, commit).
   Timed from its first commit to its last, so start-up and group join are excluded.
4. camera frames: a JPEG frame per size from 640×480 to 3840×2160, decoded and read
   for its frame signals, in full and as the worker decodes it (reduced when large).
Prints a table and writes bench/results/throughput.json.
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
import time
from pathlib import Path

import numpy as np
import torch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from PIL import Image

from framedrift.deploy.local_servers import LocalServers
from framedrift.producers.camera_fleet import CameraFleet, encode_jpeg
from framedrift.producers.datasets import SAMPLE_DATA_DIR, load_images
from framedrift.producers.stream import StreamPlan, produce_stream
from framedrift.schemas.events import ImagePayload
from framedrift.worker.detection.frame_quality import frame_signals
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.autoencoder import reconstruction_error
from framedrift.worker.model.preprocessing import dataset_to_model_input, to_model_input
from framedrift.worker.stream.decoding import DecodingLimits, decode_image

RESULTS = Path("bench/results/throughput.json")
PARTITIONS = 4


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


@torch.inference_mode()
def model_only(artifact: ModelArtifact, images, batch_size: int, repeats: int = 3) -> float:
    model = artifact.build_model()
    inputs = dataset_to_model_input(images, artifact.preprocessing)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for chunk in inputs.split(batch_size):
            reconstruction_error(model(chunk)[0], chunk)
        best = max(best, _rate(len(inputs), time.perf_counter() - started))
    return best


@torch.inference_mode()
def scoring_path(artifact: ModelArtifact, images, batch_size: int) -> float:
    model = artifact.build_model()
    arrays = list(images)
    started = time.perf_counter()
    for start in range(0, len(arrays), batch_size):
        chunk = to_model_input(arrays[start : start + batch_size], artifact.preprocessing)
        reconstruction_error(model(chunk)[0], chunk)
    return _rate(len(arrays), time.perf_counter() - started)


# Camera frame sizes the decode bench measures, (width, height).
FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))


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


def _committed(consumer: KafkaConsumer, topic: str) -> int:
    return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))


def end_to_end(model_path: Path, events: int, batch_size: int, clean) -> dict[str, float]:
    with LocalServers.start() as servers:
        topic = "bench-images"
        servers.create_topics({topic: PARTITIONS, "bench-alerts": 1, "bench-dlq": 1})
        producer = KafkaProducer(
            bootstrap_servers=servers.bootstrap_servers,
            acks="all",
            linger_ms=20,
            batch_size=512 * 1024,
        )
        sources = 16
        plan = StreamPlan(sources=sources, events_per_source=events // sources, seed=1)
        produce_stream(producer, topic, plan, clean, show_progress=False)
        producer.close()
        total = plan.sources * plan.events_per_source
        environment = {
            **os.environ,
            "FRAMEDRIFT_BOOTSTRAP_SERVERS": servers.bootstrap_servers,
            "FRAMEDRIFT_REDIS_URL": servers.redis_url,
            "FRAMEDRIFT_INPUT_TOPIC": topic,
            "FRAMEDRIFT_ALERTS_TOPIC": "bench-alerts",
            "FRAMEDRIFT_DEAD_LETTER_TOPIC": "bench-dlq",
            "FRAMEDRIFT_GROUP_ID": "bench",
            "FRAMEDRIFT_MODEL_PATH": str(model_path),
            "FRAMEDRIFT_STATE_HMAC_KEY": secrets.token_hex(16),
            "FRAMEDRIFT_BATCH_SIZE": str(batch_size),
            "FRAMEDRIFT_LOG_FORMAT": "json",
            "FRAMEDRIFT_HEALTH_PORT": "0",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "framedrift.worker.cli", "worker"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        watcher = KafkaConsumer(
            bootstrap_servers=servers.bootstrap_servers, group_id="bench", enable_auto_commit=False
        )
        try:
            first_commit, first_count, deadline = None, 0, time.monotonic() + 600
            while time.monotonic() < deadline:
                committed = _committed(watcher, topic)
                if committed and first_commit is None:
                    first_commit, first_count = time.monotonic(), committed
                if committed >= total:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("the worker did not drain the backlog within 600 s")
            finished = time.monotonic()
        finally:
            watcher.close()
            worker.terminate()
            worker.wait(timeout=30)
        assert first_commit is not None
        return {
            "events": total,
            "events_per_s": _rate(total - first_count, finished - first_commit),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/sample-model.pt"))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"no model at {args.model}: `make bench` trains it, or `framedrift train --out`")
        return 2
    artifact = ModelArtifact.load(args.model)
    clean = load_images(SAMPLE_DATA_DIR / "fashion-mnist-stream-images-idx3-ubyte.gz")

    model_rate = model_only(artifact, clean.images, args.batch_size)
    scoring_rate = scoring_path(artifact, clean.images, args.batch_size)
    pipeline = end_to_end(args.model, args.events, args.batch_size, clean)
    frames = camera_frame_reading()
    results = {
        "model_version": artifact.model_version,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "model_only_images_per_s": model_rate,
        "scoring_path_images_per_s": scoring_rate,
        "end_to_end": pipeline,
        "end_to_end_share_of_model_only": pipeline["events_per_s"] / model_rate,
        "camera_frame_decode_and_signals_ms": frames,
    }

    print(f"model {artifact.model_version}, batch {args.batch_size}, {results['machine']}")
    print(f"  model only (tensors in, errors out)     {model_rate:9.0f} images/s")
    print(f"  scoring path (uint8 arrays in)          {scoring_rate:9.0f} images/s")
    print(
        f"  end to end (Kafka -> worker -> Redis)   {pipeline['events_per_s']:9.0f} events/s "
        f"over {pipeline['events']} events"
    )
    print(f"  end to end / model only                 {pipeline['events_per_s'] / model_rate:9.2f}")
    print("camera JPEG frames, decode + frame signals, one core (ms): whole -> as the worker")
    for size, timing in frames.items():
        print(f"  {size:<10} {timing['whole_ms']:7.1f} -> {timing['worker_ms']:6.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
