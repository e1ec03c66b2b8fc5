"""Streams a simulated camera fleet (`camera_fleet.py`) as image events: the demo's cameras.

Cameras take turns, one frame each, as the dataset sources of `stream.py` do, with the
same event ids (`camera-003-0000450` is camera 3's frame 450). A camera given a fault
shows it from frame `onset` on (until frame `fault_until`, where given: the fault is
repaired). Each frame is sent as its camera's encoder made it, a JPEG at the camera's
own quality, in the binary value format.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from kafka import KafkaProducer

from framedrift.producers.camera_fleet import CameraFleet, DayCycle, Fault, FrameSize
from framedrift.producers.events import KafkaRecord, encoded_event_record
from framedrift.producers.stream import (
    EventClock,
    event_id,
    refuse_unknown_sources,
    send_records,
    source_ids,
)


@dataclass(frozen=True)
class CameraStreamPlan:
    cameras: int = 8
    frames_per_camera: int = 750
    faults: Mapping[str, Fault] = field(default_factory=dict)  # source id -> its fault
    onset: int = 450  # the frame each fault starts at
    fault_until: int | None = None  # the frame each fault is repaired at; None: never
    # Event time between a camera's frames (1/its frame rate); None: when each is made.
    frame_interval_s: float | None = None
    frame_size: FrameSize = (320, 240)
    # Where in the day (of `day_period` frames) the stream starts: by day, so that a
    # short stream is not all night.
    start_frame: int = 6_000
    day_period: int = 20_000
    rate: float | None = None  # frames per second over all cameras; None: as fast as made
    seed: int = 0

    def __post_init__(self) -> None:
        refuse_unknown_sources("faults name", self.faults, self.cameras)

    def fleet(self) -> CameraFleet:
        return CameraFleet(
            self.cameras,
            seed=self.seed,
            frame_size=self.frame_size,
            day=DayCycle(period=self.day_period),
        )


def camera_records(plan: CameraStreamPlan) -> Iterator[KafkaRecord]:
    """Every frame of the plan as an event record, cameras in turn."""
    fleet = plan.fleet()
    sources = source_ids(plan.cameras)
    repaired = plan.frames_per_camera if plan.fault_until is None else plan.fault_until
    streams = [
        itertools.chain(
            fleet.frames(
                index,
                start=plan.start_frame,
                count=repaired,
                fault=plan.faults.get(source),
                onset=plan.start_frame + plan.onset,
            ),
            fleet.frames(
                index,
                start=plan.start_frame + repaired,
                count=plan.frames_per_camera - repaired,
            ),
        )
        for index, source in enumerate(sources)
    ]
    clock = EventClock(plan.frame_interval_s)
    for sequence, frames in enumerate(zip(*streams, strict=True)):
        for camera, source, frame in zip(fleet.cameras, sources, frames, strict=True):
            yield encoded_event_record(
                camera.encode(frame),
                source,
                event_id(source, sequence),
                clock.time_of(sequence),
                "binary",
                "jpeg",
            )


def produce_camera_stream(
    producer: KafkaProducer, topic: str, plan: CameraStreamPlan, show_progress: bool = True
) -> dict[str, int]:
    """Send the plan's frames and wait for every ack; returns frames sent per camera."""
    return send_records(
        producer,
        topic,
        camera_records(plan),
        plan.cameras * plan.frames_per_camera,
        plan.rate,
        show_progress,
    )
