"""Every docstring example in the installed package runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import framedrift.producers
import framedrift.schemas
import framedrift.worker


def modules_with_examples() -> list[str]:
    found = []
    for package in (framedrift.worker, framedrift.schemas, framedrift.producers):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            spec = importlib.util.find_spec(module.name)
            if spec and spec.origin and ">>> " in Path(spec.origin).read_text():
                found.append(module.name)
    return sorted(found)


MODULES = modules_with_examples()


def test_the_examples_are_found() -> None:
    assert "framedrift.worker.detection.cusum" in MODULES


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str) -> None:
    results = doctest.testmod(importlib.import_module(module_name), verbose=False)
    assert results.attempted > 0
    assert results.failed == 0
