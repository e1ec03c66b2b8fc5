"""Kafka header values are bytes; the contract writes every field as UTF-8 text."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


def as_kafka_headers(model: BaseModel) -> list[tuple[str, bytes]]:
    """A header model -> Kafka headers: datetimes in ISO 8601, absent fields left out."""
    return [
        (name, (value.isoformat() if isinstance(value, datetime) else str(value)).encode())
        for name, value in model.model_dump(exclude_none=True).items()
    ]
