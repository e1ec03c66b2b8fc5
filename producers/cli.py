"""Command-line arguments of `framedrift produce`, kept beside the code they drive."""

from __future__ import annotations

import argparse
from pathlib import Path

from kafka import KafkaProducer

from framedrift.producers.datasets import SAMPLE_DATA_DIR, load_images
from framedrift.producers.scenarios import SCENARIOS, ScenarioParameters
from framedrift.producers.stream import StreamPlan, produce_stream

DEFAULT_CLEAN_DATA = SAMPLE_DATA_DIR / "fashion-mnist-stream-images-idx3-ubyte.gz"
DEFAULT_NOVEL_DATA = SAMPLE_DATA_DIR / "mnist-novel-images-idx3-ubyte.gz"


def _drift_pair(text: str) -> tuple[str, str]:
    source, _, scenario = text.partition("=")
    if not scenario or scenario not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"expected SOURCE=SCENARIO with a scenario from {', '.join(SCENARIOS)}; got {text!r}"
        )
    return source, scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_CLEAN_DATA,
        help="clean images: IDX (.gz), .npz or a folder (default: shipped sample)",
    )
    parser.add_argument(
        "--novel-data",
        type=Path,
        default=DEFAULT_NOVEL_DATA,
        help="images for the `novel` scenario (default: shipped MNIST sample)",
    )
    parser.add_argument("--sources", type=int, default=4, help="simulated sources (camera-000...)")
    parser.add_argument("--events-per-source", type=int, default=1000)
    parser.add_argument(
        "--drift",
        type=_drift_pair,
        action="append",
        default=[],
        metavar="SOURCE=SCENARIO",
        help=f"repeatable; scenarios: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--drift-at", type=int, default=500, help="per-source event number of the onset"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="events/s in all; default: no limit"
    )
    parser.add_argument("--format", dest="value_format", choices=["json", "binary"], default="json")
    parser.add_argument("--encoding", choices=["png", "jpeg", "raw"], default="png")
    parser.add_argument("--noise-sigma", type=float, default=ScenarioParameters.noise_sigma)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace, bootstrap_servers: str, topic: str) -> dict[str, int]:
    clean = load_images(args.data)
    needs_novel = any(scenario == "novel" for _, scenario in args.drift)
    novel = load_images(args.novel_data) if needs_novel else None
    plan = StreamPlan(
        sources=args.sources,
        events_per_source=args.events_per_source,
        drift=dict(args.drift),
        drift_at=args.drift_at,
        rate=args.rate,
        value_format=args.value_format,
        encoding=args.encoding,
        seed=args.seed,
    )
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers.split(","),
        acks="all",
        linger_ms=10,
        batch_size=256 * 1024,
    )
    try:
        return produce_stream(
            producer, topic, plan, clean, novel, ScenarioParameters(noise_sigma=args.noise_sigma)
        )
    finally:
        producer.close()
