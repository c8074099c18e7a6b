"""A pytest plugin that runs scikit-learn's own k-means test modules against torchmeans.

Loaded with ``-p swap_estimators`` before collection, it replaces
``sklearn.cluster.KMeans``, ``sklearn.cluster.MiniBatchKMeans`` and
``sklearn.cluster.BisectingKMeans`` by torchmeans' classes, so the test modules
(``test_k_means.py``, ``test_bisect_k_means.py``), imported afterwards from the installed
scikit-learn, test ours (``from sklearn.cluster import KMeans, MiniBatchKMeans``, ``from
sklearn.cluster import BisectingKMeans``). Nothing is copied: the tests
are those of the installed wheel. The only tests deselected are listed in ``EXCLUDED``
with the reason: each tests a private helper of scikit-learn or one of its module-level
functions, never the estimators.
"""

import sklearn.cluster

import torchmeans

SWAPPED = {name: getattr(torchmeans, name)
           for name in ("KMeans", "MiniBatchKMeans", "BisectingKMeans")}
"""The estimators replaced in ``sklearn.cluster``, by name."""
for _name, _estimator in SWAPPED.items():
    setattr(sklearn.cluster, _name, _estimator)

EXCLUDED = {
    "test_relocate_empty_clusters": "scikit-learn's private _relocate_empty_clusters_* helpers",
    "test_minibatch_update_consistency": "scikit-learn's private _mini_batch_step and "
                                         "_labels_inertia helpers",
    "test_minibatch_reassign": "scikit-learn's private _mini_batch_step helper",
    "test_k_means_function": "scikit-learn's module-level k_means function",
    "test_euclidean_distance": "scikit-learn's private _euclidean_*_wrapper helpers",
    "test_inertia": "scikit-learn's private _inertia_* helpers",
    "test_kmeans_plusplus_wrong_params": "scikit-learn's module-level kmeans_plusplus function",
    "test_kmeans_plusplus_output": "scikit-learn's module-level kmeans_plusplus function",
    "test_kmeans_plusplus_norms": "scikit-learn's module-level kmeans_plusplus function",
    "test_kmeans_plusplus_dataorder": "scikit-learn's module-level kmeans_plusplus function",
    "test_is_same_clustering": "scikit-learn's private _is_same_clustering helper",
}
"""Tests of scikit-learn's private helpers and module-level functions (not of the estimators).
``test_bisect_k_means.py`` tests only the estimator: nothing of it is deselected."""


def pytest_collection_modifyitems(config, items):
    """Deselect ``EXCLUDED``; check the module under test sees torchmeans' classes."""
    kept, dropped = [], []
    for item in items:
        module = item.module
        used = [name for name in SWAPPED if hasattr(module, name)]
        if not used or any(getattr(module, name) is not SWAPPED[name] for name in used):
            raise RuntimeError(f"{module.__name__} did not import torchmeans' estimators")
        (dropped if item.originalname in EXCLUDED else kept).append(item)
    items[:] = kept
    config.hook.pytest_deselected(items=dropped)
    config._torchmeans_deselected = len(dropped)


def pytest_terminal_summary(terminalreporter):
    """Name the scikit-learn whose tests ran, and against what."""
    terminalreporter.write_line(
        f"scikit-learn {sklearn.__version__} ({sklearn.__file__}) against torchmeans "
        f"{torchmeans.__version__}; deselected "
        f"{getattr(terminalreporter.config, '_torchmeans_deselected', 0)} tests of "
        "scikit-learn's own helpers")
