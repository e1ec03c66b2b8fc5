"""Composition: settings in, a `DriftWorker` with everything it runs with out.

Loads the model (recalibrating it when the stored calibration was made for other
detector settings), and makes the Redis client, the state store and the batch
processor. The Kafka clients are made later, by the loop, which waits for the brokers.
"""

from __future__ import annotations

from functools import partial

import redis
import structlog

from framedrift.worker.detection.calibration import CalibrationRefused
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.scoring import resolve_device
from framedrift.worker.ops.settings import ENV_PREFIX, Settings, SettingsError
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.kafka_clients import connect_kafka
from framedrift.worker.stream.pipeline import BatchProcessor
from framedrift.worker.stream.service import DriftWorker
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import RedisStateStore

log = structlog.get_logger(__name__)


def build_worker(settings: Settings) -> DriftWorker:
    """The worker these settings describe, not yet connected to Kafka."""
    settings.hmac_key()  # first: without the key (SettingsError), loading the model is wasted time
    try:
        device = resolve_device(settings.device)
    except ValueError as error:
        raise SettingsError(f"{ENV_PREFIX}DEVICE: {error}") from None
    artifact = calibrated_artifact(settings)
    store = state_store(settings, artifact.model_version)
    processor = BatchProcessor(
        artifact.scorer(settings.model_threads(), device),
        store,
        artifact.monitor_config(
            settings.outlier_quantile,
            settings.warmup_frames,
            settings.source_kind,
            settings.incident_hold_down_s,
            settings.stopped_after_s,
        ),
        DecodingLimits(settings.max_record_bytes, settings.max_image_pixels),
        artifact.model_version,
        settings.reader_threads,
        settings.state_cache_sources,
    )
    log.info(
        "model_device",
        device=str(device),
        model_threads=settings.model_threads(),
        reader_threads=settings.reader_threads,
    )
    return DriftWorker(settings, store, processor, connect_kafka=partial(connect_kafka, settings))


def state_store(settings: Settings, model_version: str) -> RedisStateStore:
    """The store of the sources' states these settings and this model's version name."""
    return RedisStateStore(
        redis.Redis.from_url(settings.redis_url, **settings.redis_client_options()),
        StateCodec(settings.hmac_key()),
        settings.state_prefix,
        settings.group_id,
        model_version,
    )


def calibrated_artifact(settings: Settings) -> ModelArtifact:
    """The model at `settings.model_path`, its thresholds calibrated for these settings."""
    artifact = ModelArtifact.load(settings.model_path)
    parameters = settings.detector_parameters()
    if artifact.calibration.parameters != parameters:
        # Deterministic, so every worker of the group arrives at the same thresholds.
        log.warning(
            "calibrating_at_startup",
            reason="the model was calibrated for other detector settings",
            stored=artifact.calibration.parameters.to_dict(),
            wanted=parameters.to_dict(),
            hint="`framedrift calibrate` stores a calibration in the model file",
        )
        artifact = recalibrated(artifact, settings)
    calibration = artifact.calibration
    log.info(
        "calibration",
        ert=parameters.ert,
        thresholds=calibration.thresholds,
        adwin_false_alarms=f"{calibration.adwin_alarms}/{calibration.adwin_events}",
    )
    return artifact


def recalibrated(artifact: ModelArtifact, settings: Settings) -> ModelArtifact:
    """The artifact calibrated for these settings, or a SettingsError naming the setting
    that cannot be honoured (an ERT beyond what the simulation can show, an ADWIN delta
    that spends the budget alone)."""
    try:
        return artifact.recalibrated(settings.detector_parameters())
    except CalibrationRefused as error:
        raise SettingsError(f"{ENV_PREFIX}{error.parameter.upper()}: {error}") from None
