"""Suite-wide policy: tests marked ``slow`` run only when asked for (``pytest -m slow``)."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="slow (> ~30 s on 2 cores); run with `pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
