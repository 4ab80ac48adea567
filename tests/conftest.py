from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import Server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One shared server running the fixture app (2 workers x 4 threads)."""
    with Server("tests.apps.basic:app") as srv:
        yield srv
