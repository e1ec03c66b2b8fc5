"""Detector state as plain values, and the checked reader every class rebuilds itself from.

Each stateful class of a source's state exports `to_state()`: a `PlainState`, a dict of
numbers, strings, lists of strings, numpy arrays and nested dicts for its parts. It
rebuilds from one with `from_state(StateFields)`, which hands out each field only if it
has the type, dtype and shape the class needs. A plain state names no class and holds
no code, so reading one can run none; the state codec turns it into bytes and back.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

PlainValue = bool | int | float | str | list[str] | np.ndarray | dict[str, "PlainValue"]
PlainState = dict[str, PlainValue]


class MalformedState(ValueError):
    """A plain state lacks a field its class needs, has one of the wrong type or shape, or
    has one the class does not know."""


class StateFields:
    """Hands out the fields of one plain state, checked, and remembers which were read.

    >>> fields = StateFields({"count": 3, "ring": np.zeros(4, np.int16)}, "latch")
    >>> fields.integer("count", low=0), fields.array("ring", np.int16, (4,)).shape
    (3, (4,))
    >>> fields.check_all_read()
    >>> StateFields({"count": True}, "latch").integer("count")
    Traceback (most recent call last):
    ...
    framedrift.worker.detection.plain_state.MalformedState: latch.count: expected int, found bool
    """

    def __init__(self, state: Mapping[str, object], where: str) -> None:
        self._state = state
        self._where = where  # the path to this state, for messages: "detectors.ks.episode"
        self._read: set[str] = set()
        self._parts: list[StateFields] = []

    def _take(self, name: str, expected: type) -> object:
        if name not in self._state:
            raise MalformedState(f"{self._where}: no field {name!r}")
        value = self._state[name]
        # type() and not isinstance: a bool is an int, and an int where a float belongs
        # means the state was not written by `to_state`.
        if type(value) is not expected:
            raise MalformedState(
                f"{self._where}.{name}: expected {expected.__name__}, found {type(value).__name__}"
            )
        self._read.add(name)
        return value

    def boolean(self, name: str) -> bool:
        return self._take(name, bool)  # type: ignore[return-value]

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int:
        """An int, within [low, high] where given."""
        value: int = self._take(name, int)  # type: ignore[assignment]
        if (low is not None and value < low) or (high is not None and value > high):
            raise MalformedState(f"{self._where}.{name}: {value} outside [{low}, {high}]")
        return value

    def number(self, name: str) -> float:
        return self._take(name, float)  # type: ignore[return-value]

    def text(self, name: str) -> str:
        return self._take(name, str)  # type: ignore[return-value]

    def texts(self, name: str, length: int) -> list[str]:
        """A list of exactly `length` strings."""
        value: list[object] = self._take(name, list)  # type: ignore[assignment]
        if len(value) != length or not set(map(type, value)) <= {str}:
            raise MalformedState(f"{self._where}.{name}: expected {length} strings")
        return value  # type: ignore[return-value]

    def array(self, name: str, dtype: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
        """A numpy array of exactly this dtype and shape."""
        value: np.ndarray = self._take(name, np.ndarray)  # type: ignore[assignment]
        if value.dtype != np.dtype(dtype) or value.shape != shape:
            raise MalformedState(
                f"{self._where}.{name}: expected {np.dtype(dtype)} {list(shape)}, "
                f"found {value.dtype} {list(value.shape)}"
            )
        return value

    def octets(self, name: str, max_size: int) -> bytes:
        """Opaque bytes (a one-dimensional uint8 array) of at most `max_size`."""
        value: np.ndarray = self._take(name, np.ndarray)  # type: ignore[assignment]
        if value.dtype != np.uint8 or value.ndim != 1 or value.size > max_size:
            raise MalformedState(
                f"{self._where}.{name}: expected at most {max_size} bytes as uint8, "
                f"found {value.dtype} {list(value.shape)}"
            )
        return value.tobytes()

    def part(self, name: str) -> StateFields:
        """The fields of a nested state (a detector's latch, the window's rings)."""
        nested = StateFields(self._take(name, dict), f"{self._where}.{name}")  # type: ignore[arg-type]
        self._parts.append(nested)
        return nested

    def names(self) -> list[str]:
        """Every field name, for states keyed by data (signals, detectors): read them all."""
        return list(self._state)

    def check_all_read(self) -> None:
        """Refuses a state with fields nobody read: written by other code than this."""
        unread = sorted(set(self._state) - self._read)
        if unread:
            raise MalformedState(f"{self._where}: unexpected field(s) {', '.join(unread)}")
        for nested in self._parts:
            nested.check_all_read()
