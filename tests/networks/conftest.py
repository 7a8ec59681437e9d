import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The networks here are tiny: one thread (tests/conftest.py) is faster than two."""
    yield
