"""A bad setting fails at start-up with a message that names it."""

from __future__ import annotations

import pytest

from framedrift.worker.cli import main
from framedrift.worker.ops.settings import Settings, SettingsError, settings_from_env


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FRAMEDRIFT_BATCH_SIZE", "zero"),
        ("FRAMEDRIFT_BATCH_SIZE", "0"),
        ("FRAMEDRIFT_BOOTSTRAP_SERVERS", "no-port-here"),
        ("FRAMEDRIFT_REDIS_URL", "http://wrong-scheme"),
        ("FRAMEDRIFT_REDIS_URL", "redis://localhost:6379/0?decode_responses=True"),
        ("FRAMEDRIFT_CUSUM_SLACK", "-1"),
        ("FRAMEDRIFT_STATE_HMAC_KEY", "short"),
        ("FRAMEDRIFT_LOG_FORMAT", "xml"),
        ("FRAMEDRIFT_WARMUP_FRAMES", "500"),
        ("FRAMEDRIFT_FETCH_MAX_WAIT_MS", "30000"),
    ],
)
def test_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        settings_from_env()


def test_a_redis_url_that_keeps_replies_binary_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEDRIFT_REDIS_URL", "redis://localhost:6379/0?decode_responses=0")
    assert settings_from_env().redis_url.endswith("decode_responses=0")


def test_topics_must_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEDRIFT_ALERTS_TOPIC", "image-events")
    with pytest.raises(SettingsError, match="must differ"):
        settings_from_env()


@pytest.mark.parametrize(
    ("cores", "readers", "torch_threads", "expected"),
    [(2, 2, 0, 1), (16, 2, 0, 14), (1, 2, 0, 1), (2, 2, 4, 4)],
)
def test_the_model_gets_the_cores_the_readers_leave_unless_told(
    monkeypatch: pytest.MonkeyPatch, cores: int, readers: int, torch_threads: int, expected: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    settings = Settings(reader_threads=readers, torch_threads=torch_threads)
    assert settings.model_threads() == expected


def test_worker_refuses_to_start_without_the_state_key(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("FRAMEDRIFT_STATE_HMAC_KEY", raising=False)
    assert main(["worker"]) == 2
    assert "FRAMEDRIFT_STATE_HMAC_KEY is required" in capsys.readouterr().err


def test_every_setting_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [
        f"FRAMEDRIFT_{name.upper()}"
        for name in Settings.model_fields
        if f"FRAMEDRIFT_{name.upper()}" not in readme
    ]
    assert not missing, f"README.md does not document {missing}"
