"""Whatever arrives on the topic, decoding either yields an image or a named reason."""

from __future__ import annotations

import base64
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framedrift.producers.events import encode_image
from framedrift.worker.stream.decoding import (
    DecodedEvent,
    DecodingLimits,
    InvalidEvent,
    InvalidSourceId,
    MissingSourceKey,
    decode_record,
)

LIMITS = DecodingLimits(max_record_bytes=64 * 1024, max_image_pixels=256 * 256)
HEADER_NAMES = st.sampled_from(
    [
        "schema_version",
        "event_id",
        "source_id",
        "timestamp",
        "encoding",
        "shape",
        "dtype",
        "content-type",
        "x-other",
    ]
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=40)), max_size=8)
KEYS = st.one_of(st.none(), st.binary(max_size=20))


def decodes_or_refuses(key: bytes | None, value: bytes | None, headers: list) -> None:
    try:
        assert isinstance(decode_record(key, value, headers, LIMITS), DecodedEvent)
    except InvalidEvent as error:
        assert str(error)


@settings(max_examples=400, deadline=None)
@given(key=KEYS, value=st.one_of(st.none(), st.binary(max_size=2048)), headers=HEADERS)
def test_random_bytes_and_headers_never_escape_as_anything_but_invalid_event(
    key, value, headers
) -> None:
    decodes_or_refuses(key, value, headers)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image=st.fixed_dictionaries(
        {},
        optional={
            "encoding": st.sampled_from(["png", "jpeg", "raw", "gif", 7]),
            "data": st.one_of(
                st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()), JSON_VALUES
            ),
            "shape": st.one_of(st.lists(st.integers(-3, 70000), max_size=4), JSON_VALUES),
            "dtype": st.sampled_from(["uint8", "float32", "int64", None]),
        },
    ),
    extra=st.dictionaries(
        st.sampled_from(
            [
                "schema_version",
                "event_id",
                "source_id",
                "timestamp",
                "labels",
                "metadata",
                "surprise",
            ]
        ),
        JSON_VALUES,
        max_size=6,
    ),
)
def test_near_valid_json_events_never_escape_as_anything_but_invalid_event(image, extra) -> None:
    document = {
        "schema_version": 1,
        "event_id": "e",
        "source_id": "s",
        "timestamp": "2026-01-01T00:00:00Z",
        "image": image,
        **extra,
    }
    decodes_or_refuses(b"s", json.dumps(document).encode(), [])


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.none(), st.binary(max_size=512)), headers=HEADERS)
def test_a_keyless_record_is_refused_for_its_missing_key_whatever_it_holds(value, headers) -> None:
    try:
        decode_record(None, value, headers, LIMITS)
    except MissingSourceKey:
        return
    raise AssertionError("a keyless record was not refused as MissingSourceKey")


VALID_PNG = base64.b64encode(encode_image(np.zeros((8, 8), np.uint8), "png")).decode()


@settings(max_examples=300, deadline=None)
@given(source_id=st.text(min_size=1, max_size=300))
def test_a_source_id_is_accepted_exactly_when_it_is_1_to_256_visible_ascii_characters(
    source_id: str,
) -> None:
    document = {
        "schema_version": 1,
        "event_id": "e",
        "source_id": source_id,
        "timestamp": "2026-01-01T00:00:00Z",
        "image": {"encoding": "png", "data": VALID_PNG},
    }
    visible_ascii = len(source_id) <= 256 and all("!" <= char <= "~" for char in source_id)
    try:
        event = decode_record(source_id.encode(), json.dumps(document).encode(), [], LIMITS)
    except InvalidSourceId:
        assert not visible_ascii, f"{source_id!r} refused"
    else:
        assert visible_ascii, f"{source_id!r} accepted"
        assert event.source_id == source_id
