"""Whole-fit time of one commit against another (alternate PYTHONPATH runs): see RESULTS.md."""
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import make_blobs

import torchmeans

torch.set_num_threads(2)
out = {}
for (n, d, k, iters) in [(300, 2, 4, None), (200_000, 32, 64, 20), (100_000, 128, 256, 10)]:
    X, _ = make_blobs(n, centers=k, n_features=d, random_state=0)
    X = X.astype(np.float32)
    kw = (dict(random_state=0, n_init=1) if iters is None
          else dict(init=X[:k], n_init=1, max_iter=iters, tol=0))
    fits = 50 if iters is None else 3
    torchmeans.KMeans(k, **kw).fit(X)
    times = []
    for _ in range(fits):
        start = time.perf_counter()
        torchmeans.KMeans(k, **kw).fit(X)
        times.append(time.perf_counter() - start)
    out[f"{n}x{d} k={k}"] = statistics.median(times)
print(out)
