"""Shared fixtures: the compute device (``--device``), seeded generators and blob data."""

import numpy as np
import pytest
import torch
from hypothesis import settings
from sklearn.datasets import make_blobs

# Property tests: modest, reproducible, no per-example deadline (CPU timing is noisy).
settings.register_profile("torchmeans", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("torchmeans")


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        action="store",
        default="cpu",
        help="torch device the tests compute on, e.g. cpu (default), cuda, cuda:1",
    )


def pytest_configure(config):
    name = config.getoption("--device")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f"--device {name!r} is not a torch device: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name!r} requested but CUDA is not available")


@pytest.fixture(scope="session")
def device(pytestconfig):
    """The torch device under test (``pytest --device cuda`` runs the suite on a GPU)."""
    return torch.device(pytestconfig.getoption("--device"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def blobs():
    """Well separated float64 blobs: ``(X, y, true_centers)`` with 600 rows, 5 features, 6 blobs."""
    X, y, centers = make_blobs(
        n_samples=600,
        n_features=5,
        centers=6,
        cluster_std=0.5,
        center_box=(-20, 20),
        random_state=0,
        return_centers=True,
    )
    return X, y, centers
