"""Against the real broker and Redis: a source reaches the state store only under its own key,
as an id that cannot be confused with another's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from framedrift.producers.events import image_event_record
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_keyless_records_and_unprintable_source_ids_are_dead_lettered_and_never_stored(
    stack: Stack, stream_images
) -> None:
    """A keyless record could land on any partition (issue 12, item 2); a source id with a
    NUL could make the worker sign a blob another key would accept (item 1)."""
    image = stream_images.images[0]
    valid = image_event_record(image, "camera-000", "ok-1", datetime.now(UTC), "binary", "png")
    smuggling = "camera-000\0cbuiltins\nlen\n(S'x'\ntR."
    with_nul = [
        (name, smuggling.encode() if name == "source_id" else value)
        for name, value in valid.headers
    ]
    stack.produce_raw(
        [
            (None, valid.value, valid.headers),  # the same event, without its key
            (smuggling.encode(), valid.value, with_nul),
            (valid.key, valid.value, valid.headers),
        ]
    )
    stack.start_worker()
    stack.wait_until_committed(3)

    dead = stack.read_topic(stack.dead_letter_topic, expected=2)
    reasons = sorted(dict(record.headers)["dlq_error_class"].decode() for record in dead)
    assert reasons == ["InvalidSourceId", "MissingSourceKey"]
    assert stack.counts_in_redis() == {"camera-000": 1}
