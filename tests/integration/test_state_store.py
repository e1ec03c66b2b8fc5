"""The Redis state store against a real Redis: fenced writes and refused forgeries."""

from __future__ import annotations

import uuid

import pytest
import redis

from framedrift.deploy.local_servers import LocalServers
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import PartitionFenced, RedisStateStore
from tests.detector_fixtures import synthetic_config

pytestmark = pytest.mark.integration

CONFIG = synthetic_config()
TOPIC = "images"


def store(servers: LocalServers, namespace: str, key: bytes = b"k" * 32) -> RedisStateStore:
    client = redis.Redis.from_url(servers.redis_url)
    return RedisStateStore(client, StateCodec(key), namespace, "group", "ae-test")


def state_with_count(count: int) -> SourceState:
    state = SourceState.fresh(CONFIG)
    for _ in range(count):
        state.stats.update(0.3)
    return state


def test_a_worker_that_lost_its_partition_cannot_overwrite_the_new_owner(
    servers: LocalServers,
) -> None:
    namespace = uuid.uuid4().hex
    old_owner, new_owner = store(servers, namespace), store(servers, namespace)
    stale_claim = old_owner.claim_partitions(TOPIC, [0])[0]
    # A rebalance hands partition 0 to the new owner while the old one is paused mid-batch.
    fresh_claim = new_owner.claim_partitions(TOPIC, [0])[0]
    assert fresh_claim.generation == stale_claim.generation + 1
    new_owner.save(TOPIC, {0: (fresh_claim.generation, 99)}, {"cam-1": state_with_count(100)})

    with pytest.raises(PartitionFenced, match=r"images\[0\]"):
        old_owner.save(TOPIC, {0: (stale_claim.generation, 49)}, {"cam-1": state_with_count(50)})

    assert new_owner.load_sources(["cam-1"]).states["cam-1"].stats.count == 100
    assert new_owner.applied_offsets(TOPIC) == {0: 99}


def test_claiming_returns_the_applied_offset_left_by_the_previous_owner(
    servers: LocalServers,
) -> None:
    namespace = uuid.uuid4().hex
    first, second = store(servers, namespace), store(servers, namespace)
    claims = first.claim_partitions(TOPIC, [0, 1])
    assert all(claim.applied_offset is None for claim in claims.values())
    first.save(TOPIC, {0: (claims[0].generation, 41), 1: (claims[1].generation, 7)}, {})
    taken = second.claim_partitions(TOPIC, [0, 1])
    assert (taken[0].applied_offset, taken[1].applied_offset) == (41, 7)
    assert taken[0].generation > claims[0].generation


def test_a_tampered_blob_is_rejected_and_the_others_still_load(servers: LocalServers) -> None:
    namespace = uuid.uuid4().hex
    writer = store(servers, namespace)
    claim = writer.claim_partitions(TOPIC, [0])[0]
    writer.save(
        TOPIC, {0: (claim.generation, 1)}, {"good": state_with_count(3), "bad": state_with_count(4)}
    )
    writer.client.setrange(writer.source_key("bad"), 40, b"tampered")

    loaded = writer.load_sources(["good", "bad", "never-seen"])
    assert loaded.rejected == ["bad"]
    assert set(loaded.states) == {"good"}
    assert store(servers, namespace, key=b"x" * 32).load_sources(["good"]).rejected == ["good"]
