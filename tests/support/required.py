"""Real parts the suite runs against (Chromium, model weights, the test extra's packages):
a skip on a developer's machine that lacks one, a failure in CI (``CI=true``), where a silent
skip would hide a regression (a broken install, weights no longer found)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str) -> None:
    """``what`` is missing: skip the module (fail it under ``CI=true``)."""
    if in_ci():
        pytest.fail(f"{what}: with CI=true a missing real part is a failure, not a skip",
                    pytrace=False)
    pytest.skip(what, allow_module_level=True)


def require_module(name: str) -> ModuleType:
    """``import name``, or :func:`missing`."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} is not installed ({exc})")
        raise  # not reached


def needs(present: bool, what: str) -> pytest.MarkDecorator:
    """A mark that skips a test when ``present`` is false (and, under ``CI=true``, lets it run
    and fail instead)."""
    return pytest.mark.skipif(not present and not in_ci(), reason=what)
