"""The state stores' contract: fenced writes, applied offsets, and blobs that cannot be used.

The fencing and claiming rules run against both backends, the real Redis and the
in-memory store the unit tests rely on, so that the two cannot drift apart.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from framedrift.deploy.local_servers import LocalServers, free_port
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.state_codec import CODEC_VERSION, StateCodec
from framedrift.worker.stream.state_store import (
    AppliedAdvance,
    AppliedOffsetMoved,
    PartitionFenced,
    RedisStateStore,
    SourcePartitionConflict,
    StateStore,
    StoreUnavailable,
)
from tests.detector_fixtures import synthetic_config
from tests.state_blobs import pickle_naming, signed_blob

pytestmark = pytest.mark.integration

CONFIG = synthetic_config()
TOPIC = "images"
KEY = b"k" * 32


def store(servers: LocalServers, namespace: str, key: bytes = KEY) -> RedisStateStore:
    client = redis.Redis.from_url(servers.redis_url)
    return RedisStateStore(client, StateCodec(key), namespace, "group", "ae-test")


# Two workers' views of one store.
TwoViews = Callable[[], tuple[StateStore, StateStore]]


@pytest.fixture(params=["redis", "in-memory"])
def two_views(request: pytest.FixtureRequest, servers: LocalServers) -> TwoViews:
    def make() -> tuple[StateStore, StateStore]:
        if request.param == "redis":
            namespace = uuid.uuid4().hex
            return store(servers, namespace), store(servers, namespace)
        shared = InMemoryStateStore(StateCodec(KEY))
        return shared, shared

    return make


def state_with_count(count: int) -> SourceState:
    state = SourceState.fresh(CONFIG)
    for _ in range(count):
        state.stats.update(0.3)
    return state


def test_a_worker_that_lost_its_partition_cannot_overwrite_the_new_owner(
    two_views: TwoViews,
) -> None:
    old_owner, new_owner = two_views()
    stale_claim = old_owner.claim_partitions(TOPIC, [0])[0]
    # A rebalance hands partition 0 to the new owner while the old one is paused mid-batch.
    fresh_claim = new_owner.claim_partitions(TOPIC, [0])[0]
    assert fresh_claim.generation == stale_claim.generation + 1
    new_owner.save(
        TOPIC,
        {0: AppliedAdvance(fresh_claim.generation, None, 99)},
        {"cam-1": state_with_count(100)},
        {"cam-1": 0},
    )

    with pytest.raises(PartitionFenced, match=r"images\[0\]"):
        old_owner.save(
            TOPIC,
            {0: AppliedAdvance(stale_claim.generation, None, 49)},
            {"cam-1": state_with_count(50)},
            {"cam-1": 0},
        )

    assert new_owner.load_sources(["cam-1"]).states["cam-1"].stats.count == 100
    assert new_owner.applied_offsets(TOPIC) == {0: 99}


def test_a_fenced_save_of_several_partitions_writes_none_of_them(two_views: TwoViews) -> None:
    old_owner, new_owner = two_views()
    claims = old_owner.claim_partitions(TOPIC, [0, 1])
    new_owner.claim_partitions(TOPIC, [1])  # only partition 1 moved

    with pytest.raises(PartitionFenced, match=r"images\[1\]"):
        old_owner.save(
            TOPIC,
            {
                0: AppliedAdvance(claims[0].generation, None, 10),
                1: AppliedAdvance(claims[1].generation, None, 20),
            },
            {"cam-0": state_with_count(11)},
            {"cam-0": 0},
        )

    assert old_owner.applied_offsets(TOPIC) == {}
    assert old_owner.load_sources(["cam-0"]).states == {}


def test_claiming_returns_the_applied_offset_left_by_the_previous_owner(
    two_views: TwoViews,
) -> None:
    first, second = two_views()
    claims = first.claim_partitions(TOPIC, [0, 1])
    assert all(claim.applied_offset is None for claim in claims.values())
    first.save(
        TOPIC,
        {
            0: AppliedAdvance(claims[0].generation, None, 41),
            1: AppliedAdvance(claims[1].generation, None, 7),
        },
        {},
        {},
    )
    taken = second.claim_partitions(TOPIC, [0, 1])
    assert (taken[0].applied_offset, taken[1].applied_offset) == (41, 7)
    assert taken[0].generation > claims[0].generation


def test_a_store_that_went_back_in_time_refuses_the_write_and_says_what_it_holds(
    two_views: TwoViews,
) -> None:
    """As after a restored snapshot: the worker expects 41, the store holds 7 again."""
    store_view, _ = two_views()
    claim = store_view.claim_partitions(TOPIC, [0])[0]
    store_view.save(TOPIC, {0: AppliedAdvance(claim.generation, None, 7)}, {}, {})
    store_view.save(
        TOPIC,
        {0: AppliedAdvance(claim.generation, 7, 41)},
        {"cam-1": state_with_count(5)},
        {"cam-1": 0},
    )
    rolled_back = claim.generation  # same owner; only the applied offset went back
    store_view.forget_applied(TOPIC, 0, rolled_back)
    store_view.save(TOPIC, {0: AppliedAdvance(rolled_back, None, 7)}, {}, {})

    with pytest.raises(AppliedOffsetMoved) as moved:
        store_view.save(
            TOPIC,
            {0: AppliedAdvance(claim.generation, 41, 60)},
            {"cam-1": state_with_count(9)},
            {"cam-1": 0},
        )

    assert (moved.value.expected, moved.value.stored) == (41, 7)
    assert store_view.applied_offsets(TOPIC) == {0: 7}
    assert store_view.load_sources(["cam-1"]).states["cam-1"].stats.count == 5


def test_a_source_is_written_only_from_its_home_partition(two_views: TwoViews) -> None:
    first, second = two_views()
    claims = first.claim_partitions(TOPIC, [0, 1])
    first.save(
        TOPIC,
        {0: AppliedAdvance(claims[0].generation, None, 3)},
        {"cam-1": state_with_count(4)},
        {"cam-1": 0},
    )

    with pytest.raises(SourcePartitionConflict, match=r"images\[0\].*images\[1\]"):
        second.save(
            TOPIC,
            {1: AppliedAdvance(claims[1].generation, None, 8)},
            {"cam-1": state_with_count(9)},
            {"cam-1": 1},
        )

    loaded = second.load_sources(["cam-1"])
    assert loaded.states["cam-1"].stats.count == 4
    assert loaded.homes == {"cam-1": "images[0]"}
    assert second.applied_offsets(TOPIC) == {0: 3}


def test_a_tampered_blob_is_rejected_and_the_others_still_load(servers: LocalServers) -> None:
    namespace = uuid.uuid4().hex
    writer = store(servers, namespace)
    claim = writer.claim_partitions(TOPIC, [0])[0]
    writer.save(
        TOPIC,
        {0: AppliedAdvance(claim.generation, None, 1)},
        {"good": state_with_count(3), "bad": state_with_count(4)},
        {"good": 0, "bad": 0},
    )
    writer.client.setrange(writer.source_key("bad"), 40, b"tampered")

    loaded = writer.load_sources(["good", "bad", "never-seen"])
    assert loaded.resets == {"bad": "signature"}
    assert set(loaded.states) == {"good"}
    other_key = store(servers, namespace, key=b"x" * 32)
    assert other_key.load_sources(["good"]).resets == {"good": "signature"}


def test_signed_blobs_this_code_cannot_load_reset_their_sources_instead_of_raising(
    servers: LocalServers,
) -> None:
    """A worker that raised here would stop on the same batch after every restart."""
    writer = store(servers, uuid.uuid4().hex)
    claim = writer.claim_partitions(TOPIC, [0])[0]
    writer.save(
        TOPIC,
        {0: AppliedAdvance(claim.generation, None, 1)},
        {"good": state_with_count(3)},
        {"good": 0},
    )
    old, moved = writer.source_key("old"), writer.source_key("moved")
    # Left by the previous codec version, whose pickles name the old module paths.
    writer.client.set(old, signed_blob(KEY, old, b"fd1", pickle.dumps(state_with_count(5))))
    # Signed by this version, before a class of the state was renamed.
    gone = pickle_naming("framedrift.worker.detection.monitor", "RetiredSourceState")
    writer.client.set(moved, signed_blob(KEY, moved, CODEC_VERSION, gone))

    loaded = writer.load_sources(["good", "old", "moved"])

    assert loaded.resets == {"old": "codec_version", "moved": "unloadable"}
    assert loaded.states["good"].stats.count == 3
    assert set(loaded.states) == {"good"}


def test_an_unreachable_redis_is_reported_as_store_unavailable() -> None:
    # Without redis-py's own retries and their backoff: the store reports the first refusal.
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    unreachable = RedisStateStore(nobody, StateCodec(KEY), "p", "group", "ae-test")
    with pytest.raises(StoreUnavailable):
        unreachable.claim_partitions(TOPIC, [0])
    with pytest.raises(StoreUnavailable):
        unreachable.load_sources(["cam-1"])
    with pytest.raises(StoreUnavailable):
        unreachable.save(
            TOPIC, {0: AppliedAdvance(1, None, 5)}, {"cam-1": state_with_count(1)}, {"cam-1": 0}
        )
