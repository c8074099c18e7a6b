"""The classic demo: 300 points in 4 blobs, clustered with torchmeans, saved as a PNG."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.datasets import make_blobs

from torchmeans.estimators.kmeans import KMeans

__all__ = ["DemoSummary", "run_demo"]


@dataclass(frozen=True)
class DemoSummary:
    """What the demo fitted and where it drew it."""

    n_samples: int
    n_clusters: int
    inertia: float
    n_iter: int
    seconds: float
    device: str
    image: Path

    def __str__(self) -> str:
        return (
            f"torchmeans demo: {self.n_samples} points, k={self.n_clusters}, "
            f"inertia {self.inertia:.3f}, {self.n_iter} iterations, "
            f"{self.seconds * 1e3:.1f} ms on {self.device}; plot written to {self.image}"
        )


def run_demo(
    out: str | Path = "blobs.png", *, device: str | None = None, random_state: int = 0
) -> DemoSummary:
    """Cluster ``make_blobs(300, centers=4, cluster_std=0.6, random_state=0)`` with k=4 and plot it.

    Parameters
    ----------
    out : str or Path, default='blobs.png'
        Where to write the PNG.
    device : str, optional
        Torch device (default: CUDA when available, else CPU).
    random_state : int, default=0
        Seed of the k-means++ initialization.

    Returns
    -------
    DemoSummary
        Inertia, iterations, time and device of the fit, and the image path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchmeans.plotting import plot_clusters

    X, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.60, random_state=0)
    points = torch.from_numpy(X).float()
    model = KMeans(n_clusters=4, random_state=random_state, device=device)
    start = time.perf_counter()
    model.fit(points)
    seconds = time.perf_counter() - start
    figure = plot_clusters(points, model.labels_, model.cluster_centers_,
                           title="torchmeans: k-means on 4 blobs")
    image = Path(out)
    image.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(image, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return DemoSummary(len(X), 4, model.inertia_, model.n_iter_, seconds,
                       str(model.cluster_centers_.device), image)
