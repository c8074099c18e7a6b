"""Distributed fits over ``torch.distributed`` (gloo on localhost, 2 and 3 processes).

Each test starts its ranks as subprocesses with a bounded timeout; every rank clusters its
own rows and writes what it got; the test compares with one process fitting all the rows.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from torchmeans import KMeans

pytestmark = pytest.mark.distributed

WORKER = textwrap.dedent("""
    import datetime, json, os, sys
    import numpy as np, torch, torch.distributed as dist
    import torchmeans
    from torchmeans import sources

    config = json.loads(sys.argv[1])
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=config["timeout"]))
    X = np.load(config["data"])
    a, b = config["cuts"][rank], config["cuts"][rank + 1]
    if config.get("fail_rank") == rank:
        raise SystemExit(3)  # this rank dies before the fit
    rows = sources.from_npy(config["data"]).shard(rank, len(config["cuts"]) - 1) \\
        if config.get("source") else X[a:b]
    params = config["params"]
    if "init_rows" in config:
        params["init"] = X[: config["init_rows"]]
    km = torchmeans.KMeans(**params).fit(rows)
    np.savez(os.path.join(config["out"], f"rank{rank}.npz"), centers=km.cluster_centers_,
             labels=km.labels_, inertia=km.inertia_, n_iter=km.n_iter_)
    dist.destroy_process_group()
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(tmp_path, X, cuts, params, timeout=120, **extra):
    np.save(tmp_path / "X.npy", X)
    config = {"data": str(tmp_path / "X.npy"), "cuts": cuts, "params": params,
              "out": str(tmp_path), "timeout": extra.pop("collective_timeout", 60), **extra}
    port = free_port()
    world = len(cuts) - 1
    processes = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(config)],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    outputs = []
    for process in processes:
        try:
            _, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail("a rank hung past the timeout")
        outputs.append((process.returncode, err))
    return outputs


def results(tmp_path, world):
    return [np.load(tmp_path / f"rank{rank}.npz") for rank in range(world)]


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(n_samples=3000, centers=8, n_features=5, random_state=0)
    return X


@pytest.mark.parametrize("init", ["k-means++", "k-means||"])
@pytest.mark.parametrize("cuts", [[0, 1500, 3000], [0, 700, 700, 3000], [0, 100, 2000, 3000]],
                         ids=["2 even", "3 with an empty shard", "3 uneven"])
def test_equals_one_process_on_the_concatenated_rows(tmp_path, blobs, cuts, init):
    params = {"n_clusters": 8, "random_state": 3, "n_init": 2, "init": init}
    outputs = run_ranks(tmp_path, blobs, cuts, params)
    assert all(code == 0 for code, _ in outputs), outputs
    reference = KMeans(**params).fit(blobs)
    ranks = results(tmp_path, len(cuts) - 1)
    for result in ranks:  # identical centers on every rank, equal to one process
        np.testing.assert_allclose(result["centers"], reference.cluster_centers_, rtol=1e-10,
                                   atol=1e-10)
        assert float(result["inertia"]) == pytest.approx(reference.inertia_, rel=1e-10)
        assert int(result["n_iter"]) == reference.n_iter_
    labels = np.concatenate([r["labels"] for r in ranks])
    np.testing.assert_array_equal(labels, reference.labels_)


def test_array_init_bounded_algorithm_and_a_shard_source(tmp_path, blobs):
    params = {"n_clusters": 8, "algorithm": "hamerly", "tol": 0.0}
    outputs = run_ranks(tmp_path, blobs, [0, 1000, 2000, 3000], params, init_rows=8, source=True)
    assert all(code == 0 for code, _ in outputs), outputs
    reference = KMeans(init=blobs[:8], n_init=1, **params).fit(blobs)
    ranks = results(tmp_path, 3)
    np.testing.assert_array_equal(np.concatenate([r["labels"] for r in ranks]),
                                  reference.labels_)
    np.testing.assert_allclose(ranks[2]["centers"], reference.cluster_centers_, rtol=1e-10)


def test_empty_clusters_are_relocated_across_ranks(tmp_path, blobs):
    init = np.repeat(blobs[:1], 8, axis=0) + np.arange(8)[:, None] * 1e-3  # most start empty
    np.save(tmp_path / "init.npy", init)
    params = {"n_clusters": 8, "n_init": 1, "tol": 0.0}
    X = np.vstack([init, blobs])
    outputs = run_ranks(tmp_path, X, [0, 1500, 3008], params, init_rows=8)
    assert all(code == 0 for code, _ in outputs), outputs
    reference = KMeans(init=init, **params).fit(X)
    ranks = results(tmp_path, 2)
    np.testing.assert_allclose(ranks[0]["centers"], reference.cluster_centers_, rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_array_equal(np.concatenate([r["labels"] for r in ranks]),
                                  reference.labels_)


def test_a_rank_that_dies_fails_every_rank_in_bounded_time(tmp_path, blobs):
    outputs = run_ranks(tmp_path, blobs, [0, 1500, 3000], {"n_clusters": 4, "random_state": 0},
                        timeout=120, fail_rank=1, collective_timeout=15)
    codes = [code for code, _ in outputs]
    assert codes[1] == 3
    assert codes[0] != 0  # the survivor errors out (collective timeout or closed peer)


def test_command_line_under_torchrun(tmp_path, blobs):
    path = tmp_path / "blobs.npy"
    np.save(path, blobs)
    labels = tmp_path / "labels.npy"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(free_port()), "-m", "torchmeans", "fit", str(path), "-k", "8",
               "--seed", "3", "--labels", str(labels), "--json", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    reference = KMeans(8, random_state=3).fit(blobs)
    assert summary["processes"] == 2
    assert summary["n_samples"] == 3000
    assert summary["inertia"] == pytest.approx(reference.inertia_, rel=1e-10)
    np.testing.assert_array_equal(np.load(labels), reference.labels_)
