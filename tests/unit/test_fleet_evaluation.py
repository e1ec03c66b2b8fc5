"""The camera-fleet section of `framedrift evaluate`, at its quick size: a real (small)
fleet model, real camera streams, real faults through each camera's own normal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from framedrift.worker.evaluation import fleet

QUICK = fleet.FleetSize.quick()


@pytest.fixture(scope="module")
def quick_readings(tmp_path_factory: pytest.TempPathFactory) -> fleet.FleetReadings:
    model = tmp_path_factory.mktemp("fleet") / "model.pt"
    return fleet.read_fleet(QUICK, model)


@pytest.fixture(scope="module")
def quick_results(quick_readings: fleet.FleetReadings) -> dict[str, Any]:
    return fleet.evaluate_fleet(quick_readings, fleet.DEFAULT_FLEET_ERT, sweep=(1e4, 1e9))


def test_the_report_has_every_camera_and_every_fault_run(quick_results: dict[str, Any]) -> None:
    cameras = quick_results["clean"]["cameras"]
    assert len(cameras) == QUICK.cameras
    assert all(camera["frames"] == QUICK.frames for camera in cameras)
    assert quick_results["clean"]["all"]["frames"] == QUICK.cameras * QUICK.frames
    warmup = QUICK.own_normal(fleet.DEFAULT_FLEET_ERT).warmup_frames
    assert all(camera["tested_frames"] == QUICK.frames - warmup for camera in cameras)
    assert all(len(camera["alarms"]) == camera["false_alarms"] for camera in cameras)
    assert list(quick_results["faults"]) == list(QUICK.faults)
    for row in quick_results["faults"].values():
        assert row["runs"] == QUICK.runs == len(row["runs_detail"])
        assert 0.0 <= row["detection_rate"] <= 1.0
        for run in row["runs_detail"]:
            assert warmup + QUICK.clean_after_warmup <= run["onset"] <= QUICK.frames - QUICK.horizon


def test_a_knocked_camera_is_caught_within_a_window_and_named_displacement(
    quick_results: dict[str, Any],
) -> None:
    knocked = quick_results["faults"]["knocked"]
    assert knocked["detection_rate"] == 1.0
    assert knocked["median_delay"] <= QUICK.own_normal(fleet.DEFAULT_FLEET_ERT).window
    assert "displacement" in knocked["first_signals"]


def test_a_frozen_camera_is_caught_and_named_frame_change(quick_results: dict[str, Any]) -> None:
    frozen = quick_results["faults"]["frozen"]
    assert frozen["detection_rate"] == 1.0
    assert "frame_change" in frozen["first_signals"]


def test_the_report_renders_as_a_table_and_a_plot(
    quick_results: dict[str, Any], tmp_path: Path
) -> None:
    table = fleet.markdown_table(quick_results)
    assert all(f"| {name} |" in table for name in QUICK.faults)
    assert all(f"| {camera['camera']} |" in table for camera in quick_results["clean"]["cameras"])
    assert "| 1e+04 | 5 of 9 |" in table and "| 1e+09 | 8 of 9 |" in table
    fleet.plot_fleet(quick_results, tmp_path / "fleet.png")
    assert (tmp_path / "fleet.png").stat().st_size > 10_000
    fleet.plot_against_ert(quick_results, tmp_path / "fleet-ert.png")
    assert (tmp_path / "fleet-ert.png").stat().st_size > 10_000


def test_saved_readings_replay_to_the_same_report(
    quick_readings: fleet.FleetReadings, quick_results: dict[str, Any], tmp_path: Path
) -> None:
    fleet.save_readings(tmp_path / "readings.npz", quick_readings)
    loaded = fleet.load_readings(tmp_path / "readings.npz")
    assert loaded.size == QUICK and loaded.model_version == quick_readings.model_version
    replayed = fleet.evaluate_fleet(loaded, fleet.DEFAULT_FLEET_ERT, sweep=(1e4, 1e9))
    assert replayed["clean"] == quick_results["clean"]
    assert replayed["faults"] == quick_results["faults"]
    assert replayed["against_ert"] == quick_results["against_ert"]


def test_fault_runs_are_spread_over_cameras_variants_and_the_day() -> None:
    size = replace(fleet.FleetSize(), runs=10)
    plan = fleet.plan_runs(size, warmup_frames=size.own_normal(1e6).warmup_frames)
    assert len(plan) == len(size.faults) * size.runs
    smudges = {run.variant.region for run in plan if run.fault == "smudge"}
    assert len(smudges) == 4  # every corner
    assert {run.camera for run in plan if run.fault == "frozen"} == set(range(size.cameras))
    onsets = [run.onset for run in plan if run.camera == 0]
    assert len(set(onsets)) == len(onsets)
    assert min(onsets) == size.own_normal(1e6).warmup_frames + size.clean_after_warmup
    assert max(onsets) == size.frames - size.horizon


def test_a_stream_too_short_for_a_fault_run_is_refused() -> None:
    with pytest.raises(ValueError, match="no room for a fault run"):
        fleet.plan_runs(replace(QUICK, frames=600), warmup_frames=521)
