"""Fixtures: a real conveyord per test module, on free ports below the
ephemeral range, with short leases and sessions (see conveyor_testlib)."""

from __future__ import annotations

import os
import re
import sys
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

import conveyor  # noqa: E402
from conveyor_testlib import Factory  # noqa: E402


@pytest.fixture(scope="module")
def daemon():
    """One daemon per test module."""
    f = Factory()
    d = f()
    yield d
    f.teardown()


@pytest.fixture
def conveyord():
    """Factory for tests that need their own daemon: ``conveyord(history=4)``."""
    f = Factory()
    yield f
    f.teardown()


@pytest.fixture
def client(daemon):
    with conveyor.Client(daemon.requests, timeout=5.0) as c:
        yield c


@pytest.fixture
def uid(request) -> str:
    """A unique name for this test's services, groups and topics."""
    base = re.sub(r"[^A-Za-z0-9]", "-", request.node.name)[:40]
    return f"{base}-{uuid.uuid4().hex[:6]}"
