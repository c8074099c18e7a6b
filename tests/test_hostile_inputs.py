"""Hostile data, parameters, weights and inits: a clean exception or a valid result.

The hypothesis properties live in ``tests/_hostile_inputs.py``; each runs in a child
process here, because every fit of dense CPU data goes through the native kernel, and a
crash there (SIGSEGV, SIGABRT) must fail this test rather than kill pytest. A hang fails
it too (the timeout). The regression tests of each defect found by hand are in
``test_errors.py`` (parameters, weights, ``out=``), ``test_minibatch.py`` (the mini-batch
lifecycle) and ``test_hostile_files.py`` (model files and checkpoints).
"""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PROPERTIES = ["fits", "predictions", "partial_fits"]
TIMEOUT = 900
"""Seconds before a property run counts as a hang (generous: shared, loaded CPUs)."""


@pytest.mark.parametrize("name", PROPERTIES)
def test_hostile_inputs_give_clean_errors_or_valid_results(name):
    result = subprocess.run([sys.executable, str(HERE / "_hostile_inputs.py"), name],
                            capture_output=True, text=True, cwd=HERE, timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"{name}: exit status {result.returncode} (negative: killed by that signal)\n"
        + result.stdout[-4000:] + result.stderr[-8000:])


def test_the_properties_can_fail(tmp_path):
    """The child reports a broken invariant: a property whose check is made to fail."""
    script = tmp_path / "broken.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import _hostile_inputs as h\n"
        "def check(*args):\n"
        "    raise AssertionError('broken on purpose')\n"
        "h.check_fitted = check\n"
        "h.fits()\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=HERE, timeout=TIMEOUT)
    assert result.returncode != 0
    assert "broken on purpose" in result.stderr
