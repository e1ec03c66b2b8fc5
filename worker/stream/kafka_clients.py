"""The worker's Kafka producer and consumer, made from the settings.

`connect_kafka` raises `BrokersUnavailable` instead of blocking when no broker answers;
the loop (`service.py`) waits and tries again.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from framedrift.worker.ops.settings import Settings, parse_bootstrap_servers


class BrokersUnavailable(ConnectionError):
    """No bootstrap server could be reached; try again later."""


@dataclass(frozen=True)
class KafkaClients:
    producer: KafkaProducer  # alerts and dead letters, acks from all in-sync replicas
    consumer: KafkaConsumer  # the input topic, offsets committed by hand


def connect_kafka(settings: Settings) -> KafkaClients:
    """A producer and a (not yet subscribed) consumer, or BrokersUnavailable."""
    if not any_broker_answers(settings.bootstrap_servers):
        # Without this probe kafka-python would block 30 s per attempt before saying so.
        raise BrokersUnavailable("no bootstrap server accepts connections")
    producer = None
    try:
        producer = KafkaProducer(
            **settings.kafka_client_options(),
            acks="all",
            linger_ms=5,
            max_request_size=2 * settings.max_record_bytes + (1 << 20),
        )
        consumer = KafkaConsumer(
            **settings.kafka_client_options(),
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(500, settings.session_timeout_ms // 3),
            max_poll_interval_ms=settings.max_poll_interval_ms,
            max_partition_fetch_bytes=max(1 << 20, settings.max_record_bytes + 1024),
        )
    except KafkaError as error:  # kafka-python 3 raises KafkaTimeoutError for no broker
        if producer is not None:
            producer.close(timeout=0)
        raise BrokersUnavailable(f"{type(error).__name__}: {error}") from error
    return KafkaClients(producer, consumer)


def any_broker_answers(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection (a cheap probe, no Kafka protocol)."""
    for host, port in parse_bootstrap_servers(bootstrap_servers):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False
