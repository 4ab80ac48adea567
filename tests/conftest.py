from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.load import Load
from tests.server import Server


def pytest_report_header() -> str:
    from prefork.engine_choice import choose

    wanted = os.environ.get("TEST_HTTP_ENGINE") or "auto"
    engine = choose(wanted)  # type: ignore[arg-type]
    return f"servers under test: http_engine = {wanted} -> {engine.name} ({engine.why})"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One shared server running the fixture app (2 workers x 4 threads)."""
    with Server("tests.apps.basic:app") as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_load_left_running() -> Iterator[None]:
    """A test that failed half way stops its load's client threads here."""
    yield
    Load.stop_all()
