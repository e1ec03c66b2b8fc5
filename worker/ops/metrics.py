"""Prometheus metrics of one worker process, served at /metrics by `ops/health.py`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

EVENTS_IN = Counter("framedrift_events_total", "Input records read.", registry=REGISTRY)
EVENTS_SCORED = Counter("framedrift_events_scored_total", "Images scored.", registry=REGISTRY)
OUTLIERS = Counter(
    "framedrift_outliers_total",
    "Scored images whose reconstruction error is above the baseline's outlier quantile "
    "(FRAMEDRIFT_OUTLIER_QUANTILE).",
    registry=REGISTRY,
)
REPLAYS_SKIPPED = Counter(
    "framedrift_replays_skipped_total",
    "Records at or below a stored applied offset.",
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "framedrift_dead_letters_total",
    "Records sent to the dead-letter topic.",
    ["reason"],
    registry=REGISTRY,
)
INCIDENT_EVENTS = Counter(
    "framedrift_incident_events_total",
    "Incident transitions published, by transition (opened, updated, resolved) and "
    "question (out_of_domain, changed).",
    ["transition", "question"],
    registry=REGISTRY,
)
INCIDENTS_OPEN = Gauge(
    "framedrift_incidents_open",
    "Sources of this worker's partitions with an incident open (announced), by question. "
    "Counts the sources it saw since it claimed their partition: after a restart, a source "
    "with an open incident joins the count at its next frame.",
    ["question"],
    registry=REGISTRY,
)
COMMANDS_APPLIED = Counter(
    "framedrift_commands_applied_total",
    "Operator commands applied, by command (accept, rollback, silence, reset); a copy of "
    "a command already applied is not counted.",
    ["command"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "framedrift_batch_seconds",
    "Decode, score and detect, per batch.",
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHECKPOINT_SECONDS = Histogram(
    "framedrift_checkpoint_seconds",
    "Publish, persist and commit, per batch.",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAG = Gauge(
    "framedrift_lag_records",
    "Records behind the high-water mark, all assigned partitions.",
    registry=REGISTRY,
)
LAST_SUCCESSFUL_POLL = Gauge(
    "framedrift_last_successful_poll_timestamp_seconds",
    "Unix time of the last poll of Kafka that succeeded (records or not): a worker that "
    "cannot reach its brokers stops moving it.",
    registry=REGISTRY,
)
ASSIGNED_PARTITIONS = Gauge(
    "framedrift_assigned_partitions", "Partitions owned.", registry=REGISTRY
)
REDIS_ERRORS = Counter(
    "framedrift_redis_errors_total",
    "Redis operations that failed and were retried.",
    ["operation"],
    registry=REGISTRY,
)
KAFKA_ERRORS = Counter(
    "framedrift_kafka_errors_total",
    "Kafka operations that failed.",
    ["operation"],
    registry=REGISTRY,
)
STATES_LOADED = Counter(
    "framedrift_states_loaded_total",
    "Source states a batch started from, by where they came from: memory (as this worker "
    "last saved them, FRAMEDRIFT_STATE_CACHE_SOURCES) or store (read from Redis).",
    ["origin"],
    registry=REGISTRY,
)
STATE_RESETS = Counter(
    "framedrift_state_resets_total",
    "Sources whose detectors restarted clean, by reason: the `reason` of the codec's "
    "UnusableState (signature, codec_version, unloadable), or lost (the store lost the "
    "state of the source's partition).",
    ["reason"],
    registry=REGISTRY,
)
FENCED_WRITES = Counter(
    "framedrift_fenced_writes_total",
    "Checkpoints refused because the partition's generation is not this worker's (another "
    "worker claimed it, or the store lost it).",
    registry=REGISTRY,
)
APPLIED_OFFSET_MOVED = Counter(
    "framedrift_applied_offset_moved_total",
    "Checkpoints refused because the stored applied offset is not the one this worker "
    "expected (the store went back in time); the partition was re-claimed and re-read.",
    registry=REGISTRY,
)
SOURCE_PARTITION_CONFLICTS = Counter(
    "framedrift_source_partition_conflicts_total",
    "Checkpoints refused because a source's state would be written from a partition other "
    "than its recorded home (its records from there are dead-lettered on the re-read).",
    registry=REGISTRY,
)
STATE_LOST = Counter(
    "framedrift_state_lost_partitions_total",
    "Partitions claimed with offsets committed in Kafka but no applied offset in the store: "
    "their state was lost; the worker went on from the committed offset.",
    registry=REGISTRY,
)
APPLIED_OFFSET_RESETS = Counter(
    "framedrift_applied_offset_resets_total",
    "Stored applied offsets found beyond the end of the partition's log (topic recreated "
    "or truncated) and dropped at claim.",
    registry=REGISTRY,
)
PUBLISH_HELD_BACK = Counter(
    "framedrift_publish_held_back_total",
    "Partitions held back from a checkpoint because the broker did not take one of their "
    "incident events or dead letters, by error class; their records are read again after a pause.",
    ["error"],
    registry=REGISTRY,
)
DEAD_LETTER_VALUES_OMITTED = Counter(
    "framedrift_dead_letter_values_omitted_total",
    "Dead letters sent without their value because it was too large for the dead-letter "
    "topic (the original stays on the input topic).",
    registry=REGISTRY,
)
