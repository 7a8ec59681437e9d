import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The networks here are tiny: one thread is faster than two, and robust on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
