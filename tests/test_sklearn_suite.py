"""scikit-learn's own KMeans/MiniBatchKMeans/BisectingKMeans tests, run against torchmeans.

The modules are the installed scikit-learn's ``sklearn/cluster/tests/test_k_means.py`` and
``test_bisect_k_means.py``, imported in one fresh pytest process after
``tests/sklearn_suite/swap_estimators.py`` has put torchmeans' ``KMeans``,
``MiniBatchKMeans`` and ``BisectingKMeans`` in ``sklearn.cluster`` (nothing is copied),
with their float32 tests on and the global random seed at five values. The tests it
deselects, and why, are listed there (``EXCLUDED``): only tests of scikit-learn's private
helpers and module-level functions.
"""

import importlib.metadata
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import pytest
import sklearn
from packaging.requirements import Requirement
from packaging.version import Version

SUITE = Path(__file__).parent / "sklearn_suite"
SEEDS = range(40, 45)
"""Values of ``SKLEARN_TESTS_GLOBAL_RANDOM_SEED`` (scikit-learn's default, 42, among them)."""
MODULES = ("test_k_means", "test_bisect_k_means")
"""scikit-learn's test modules run (``sklearn/cluster/tests/``)."""
FEWEST_TESTS_PER_SEED = {"test_k_means": 250, "test_bisect_k_means": 24}
"""Fewer passing tests than this at a seed (its own and the seedless ones) means a module was
not really run: 1.6 and 1.9 run 256 of test_k_means.py at each seed (132 with the seed, 124
without); test_bisect_k_means.py has 24 (1.6) or 25 (1.9) tests, none with the seed."""


def claimed_scikit_learn() -> Requirement:
    """The scikit-learn requirement of the installed torchmeans (pyproject.toml's)."""
    requirements = [Requirement(r) for r in importlib.metadata.requires("torchmeans")]
    return next(r for r in requirements if r.name == "scikit-learn" and r.marker is None)


def run_scikit_learns_suite(tmp_path: Path, site: Path | None = None
                            ) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the suite of the installed scikit-learn, or of the one installed in ``site``."""
    package = Path(sklearn.__file__).parent if site is None else site / "sklearn"
    report = tmp_path / "report.xml"
    path = [str(SUITE)] + ([str(site)] if site is not None else [])
    env = {**os.environ,
           "SKLEARN_TESTS_GLOBAL_RANDOM_SEED": f"{SEEDS[0]}-{SEEDS[-1]}",
           "SKLEARN_RUN_FLOAT32_TESTS": "1",
           "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-c", str(SUITE / "pytest.ini"),
               "--rootdir", str(package), "-p", "swap_estimators", "-p", "no:cacheprovider",
               "-q", "--tb=short", f"--junitxml={report}",
               *(str(package / "cluster" / "tests" / f"{module}.py") for module in MODULES)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=3000)
    return result, report


def outcomes_by_seed(report: Path, module: str) -> dict[str, Counter]:
    """Count the outcomes of each seed's tests of ``module`` (seedless ones under ``'none'``)."""
    counts: dict[str, Counter] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        if case.get("classname", "").rpartition(".")[2] != module:
            continue
        name = case.get("name", "")
        parameters = name.partition("[")[2].rstrip("]").split("-")
        seed = next((p for p in parameters if p.isdigit() and int(p) in SEEDS), "none")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        counts.setdefault(seed, Counter())[outcome] += 1
    return counts


def check_outcomes(result: subprocess.CompletedProcess, report: Path, version: str) -> None:
    """Every test ran and passed at every seed; only the listed exclusions were deselected."""
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert f"scikit-learn {version}" in result.stdout  # the version meant was the one run
    outcomes = re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)",
                          summary)
    assert {word for _, word in outcomes} == {"passed", "deselected"}, summary
    deselected = int(dict((word, n) for n, word in outcomes)["deselected"])
    assert f"deselected {deselected} tests of scikit-learn's own helpers" in result.stdout
    for module in MODULES:
        counts = outcomes_by_seed(report, module)
        print(f"scikit-learn {version} {module}: {summary}; by seed: "
              + ", ".join(f"{seed}: {dict(c)}" for seed, c in sorted(counts.items())))
        per_seed = {seed: counts.get(str(seed), Counter()) for seed in SEEDS}
        assert all(c == per_seed[SEEDS[0]] for c in per_seed.values()), per_seed  # same tests
        assert set(per_seed[SEEDS[0]]) <= {"passed"}
        assert set(counts.get("none", {"passed": 0})) == {"passed"}, counts
        passed = per_seed[SEEDS[0]]["passed"] + counts.get("none", Counter())["passed"]
        assert passed >= FEWEST_TESTS_PER_SEED[module], (module, counts)


@pytest.mark.slow
def test_scikit_learns_kmeans_tests_pass_against_torchmeans(tmp_path):
    assert claimed_scikit_learn().specifier.contains(sklearn.__version__)
    result, report = run_scikit_learns_suite(tmp_path)
    check_outcomes(result, report, sklearn.__version__)


@pytest.mark.slow
def test_the_lowest_claimed_scikit_learn_passes_too(tmp_path):
    """The suite of the oldest scikit-learn that pyproject.toml admits, beside this one."""
    lowest = min((Version(s.version) for s in claimed_scikit_learn().specifier
                  if s.operator == ">="), default=None)
    assert lowest is not None, "pyproject.toml gives scikit-learn no lower bound"
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         f"scikit-learn=={lowest.major}.{lowest.minor}.*"],
        capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    version = importlib.metadata.Distribution.at(
        next(site.glob("scikit_learn-*.dist-info"))).version
    result, report = run_scikit_learns_suite(tmp_path, site)
    check_outcomes(result, report, version)
