import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # many tiny optimizer steps: intra-op threads only add contention on a shared 2-core box
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
