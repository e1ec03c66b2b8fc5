"""The options of `framedrift produce` and the run they drive, kept beside the producer code.

`framedrift` hands this module its command line untouched (`parse_arguments`), so the
worker's command line never imports the producers unless `produce` is what runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from framedrift.producers.datasets import SAMPLE_DATA_DIR, load_images
from framedrift.producers.scenarios import SCENARIOS, ScenarioParameters
from framedrift.producers.stream import StreamPlan, produce_stream

DEFAULT_CLEAN_DATA = SAMPLE_DATA_DIR / "fashion-mnist-stream-images-idx3-ubyte.gz"
DEFAULT_NOVEL_DATA = SAMPLE_DATA_DIR / "mnist-novel-images-idx3-ubyte.gz"
# A reachable cluster answers the first metadata request in milliseconds; a wrong
# address should say so in seconds, not after kafka-python's default 30.
BOOTSTRAP_TIMEOUT_MS = 5000


class BrokerUnreachableError(ConnectionError):
    """No broker at the bootstrap servers answered within BOOTSTRAP_TIMEOUT_MS."""


def _drift_pair(text: str) -> tuple[str, str]:
    source, _, scenario = text.partition("=")
    if not scenario or scenario not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"expected SOURCE=SCENARIO with a scenario from {', '.join(SCENARIOS)}; got {text!r}"
        )
    return source, scenario


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framedrift produce",
        description="Stream dataset images as events to FRAMEDRIFT_INPUT_TOPIC, with drift.",
    )
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
    parser.add_argument(
        "--sources", type=_positive_int, default=4, help="simulated sources (camera-000...)"
    )
    parser.add_argument("--events-per-source", type=_positive_int, default=1000)
    parser.add_argument(
        "--drift",
        type=_drift_pair,
        action="append",
        default=[],
        metavar="SOURCE=SCENARIO",
        help=f"repeatable; scenarios: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--drift-at", type=_count, default=500, help="per-source event number of the onset"
    )
    parser.add_argument(
        "--rate", type=_positive_float, default=None, help="events/s in all; default: no limit"
    )
    parser.add_argument("--format", dest="value_format", choices=["json", "binary"], default="json")
    parser.add_argument("--encoding", choices=["png", "jpeg", "raw"], default="png")
    parser.add_argument("--noise-sigma", type=float, default=ScenarioParameters.noise_sigma)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The options, with `plan` (a StreamPlan) checked: a bad combination is a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.plan = StreamPlan(
            sources=args.sources,
            events_per_source=args.events_per_source,
            drift=dict(args.drift),
            drift_at=args.drift_at,
            rate=args.rate,
            value_format=args.value_format,
            encoding=args.encoding,
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    return args


def run(args: argparse.Namespace, bootstrap_servers: str, topic: str) -> dict[str, int]:
    """Send the planned events; DatasetError or BrokerUnreachableError when they cannot go."""
    clean = load_images(args.data)
    needs_novel = any(scenario == "novel" for _, scenario in args.drift)
    novel = load_images(args.novel_data) if needs_novel else None
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=10,
            batch_size=256 * 1024,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
    except KafkaTimeoutError as error:
        raise BrokerUnreachableError(
            f"no Kafka broker answered at {bootstrap_servers} "
            f"within {BOOTSTRAP_TIMEOUT_MS / 1000:.0f} s"
        ) from error
    try:
        return produce_stream(
            producer,
            topic,
            args.plan,
            clean,
            novel,
            ScenarioParameters(noise_sigma=args.noise_sigma),
        )
    finally:
        producer.close()
