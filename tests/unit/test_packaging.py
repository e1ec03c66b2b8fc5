"""The wheel installs one namespace, `framedrift`, with every module the folders hold.

Built from a copy of the checkout's files (tracked, or new and not ignored), so that
nothing left in the working tree by a local build or an editable install can hide a
file the wheel would miss.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).parents[2]
# Folder in the repository -> where pyproject.toml's package-dir installs it.
INSTALLED_AS = {
    "worker": "framedrift/worker",
    "schemas": "framedrift/schemas",
    "producers": "framedrift/producers",
    "deploy": "framedrift/deploy",
}


def _checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (REPOSITORY / name).is_file()]


def _installed_name(repository_path: str) -> str | None:
    folder, _, rest = repository_path.partition("/")
    return f"{INSTALLED_AS[folder]}/{rest}" if folder in INSTALLED_AS and rest else None


@pytest.fixture(scope="module")
def wheel_contents(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    source = tmp_path_factory.mktemp("source")
    for name in _checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPOSITORY / name, source / name)
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        check=True,
        timeout=240,
    )
    (wheel,) = wheels.glob("framedrift-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_installs_nothing_beside_the_framedrift_namespace(
    wheel_contents: set[str],
) -> None:
    top_level = {name.split("/", 1)[0] for name in wheel_contents}
    assert {entry for entry in top_level if not entry.endswith(".dist-info")} == {"framedrift"}
    assert not [name for name in wheel_contents if "/bench/" in name or "/tests/" in name]


def test_every_module_of_the_installed_folders_is_in_the_wheel(wheel_contents: set[str]) -> None:
    """A sub-package missing from pyproject.toml's `packages` would be left out."""
    modules = [
        _installed_name(name)
        for name in _checkout_files()
        if name.endswith(".py") and _installed_name(name)
    ]
    assert "framedrift/worker/stream/service.py" in modules  # the listing found the folders
    assert sorted(set(modules) - wheel_contents) == []


def test_the_wheel_carries_the_json_schemas_and_the_sample_data(
    wheel_contents: set[str],
) -> None:
    data_files = [
        _installed_name(name)
        for name in _checkout_files()
        if name.startswith(("schemas/json/", "producers/sample_data/"))
    ]
    assert any(name.endswith(".schema.json") for name in data_files)
    assert any(name.endswith("-idx3-ubyte.gz") for name in data_files)
    assert sorted(set(data_files) - wheel_contents) == []
