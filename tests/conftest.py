"""Shared fixtures: a real gateway on loopback, fake upstreams, the official SDKs as clients."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.server import GatewayServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("SPACEAI_REFERENCE_DIR", REPO.parent / "shared" / "reference"))


@pytest.fixture
def local_gateway(tmp_path):
    """A gateway with the built-in catalog (local model included), SQLite in tmp_path."""
    with GatewayServer(tmp_path) as gw:
        yield gw
