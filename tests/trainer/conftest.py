"""Fixtures for the trainer tests."""
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Every trainer test runs torch on one thread: the tests share small machines with other work,
    and the resume tests compare weights bit for bit with a run made in this process."""
    torch.set_num_threads(1)
