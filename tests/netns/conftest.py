"""Every test in this folder builds network namespaces: it needs root, and it is marked so
(``-m "not netns"`` runs the unit tests alone, without root or FRR)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.netns)
