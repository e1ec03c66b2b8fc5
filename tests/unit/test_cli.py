"""The command line's start-up: a stop request while it is still loading is a clean exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_sigterm_half_a_second_after_launch_exits_cleanly(tmp_path) -> None:
    """Orchestrators stop workers that are still importing torch; that is not a crash.

    Half a second is within the seconds of imports and model loading, so this fails
    if anything slow moves in front of the handler `main` installs (it once did: the
    settings module imported the calibration code, and with it torch).
    """
    environment = {
        **os.environ,
        "FRAMEDRIFT_STATE_HMAC_KEY": "k" * 32,
        "FRAMEDRIFT_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # nothing listens: it would wait
        "FRAMEDRIFT_MODEL_PATH": str(tmp_path / "model.pt"),
        "FRAMEDRIFT_HEALTH_PORT": "0",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "framedrift.worker.cli", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr.decode()
