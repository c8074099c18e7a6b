"""The command line never shows a traceback, and writes outputs exactly where it is asked.

Every failure must be one line on stderr (``Error: ...``) and a non-zero exit status, and
an output goes to exactly the path given, in the format its extension names, or is
refused before any work. The headline properties run ``python -m torchmeans`` in a real
subprocess (what a user sees, interpreter and all); the wider matrices use click's
runner, which goes through the same ``main`` of the command group.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import torchmeans
from torchmeans.cli import build_cli
from torchmeans.io.data_files import replace_atomically

COMMAND = [sys.executable, "-m", "torchmeans"]


# -- helpers ---------------------------------------------------------------------------------

def run_process(*args, cwd, env=None, code=None):
    """Run the command line (``code`` replaces ``-m torchmeans`` with a ``-c`` script)."""
    command = [sys.executable, "-c", code] if code is not None else COMMAND
    environment = dict(os.environ)
    environment.pop("TORCHMEANS_DEBUG", None)
    environment.update(env or {})
    return subprocess.run([*command, *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def single_error_line(done, exit_code=1):
    """Assert a real process failed with one ``Error:`` line on stderr; return the line."""
    assert done.returncode == exit_code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert done.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def cli():
    return build_cli()


def invoke(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def error_line(result, exit_code=1):
    """Assert the runner's command failed with one ``Error:`` line on stderr alone."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def listing(directory):
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


@pytest.fixture
def data(tmp_path):
    """A tiny dataset in tmp_path: 40 points, 2 features, 2 clear clusters."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    path = tmp_path / "data.npy"
    np.save(path, X)
    return path


@pytest.fixture
def model(tmp_path, data):
    path = tmp_path / "m.safetensors"
    torchmeans.KMeans(2, random_state=0).fit(np.load(data)).save(path)
    return path


def _cuda_device_to_refuse():
    """A CUDA device that does not exist here: ``cuda`` without CUDA, else one too many."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


# -- real processes: the known defects and the entry point's own guarantees ------------------

def test_missing_cuda_is_one_line_before_data_is_read(tmp_path):
    device = _cuda_device_to_refuse()
    line = single_error_line(run_process("fit", "missing.npy", "-k", 3, "--device", device,
                                         cwd=tmp_path))
    assert line.startswith(f"Error: --device {device}: ")  # the device, not the missing file
    if device == "cuda":
        assert f"CUDA is not available on this machine (torch {torch.__version__})" in line


def test_labels_csv_is_written_at_exactly_that_path(tmp_path, data):
    done = run_process("fit", data.name, "-k", 2, "--seed", 0, "--labels", "out.csv",
                       "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert listing(tmp_path) == ["data.npy", "out.csv"]  # no out.csv.npy, no scratch file
    text = (tmp_path / "out.csv").read_text().splitlines()
    assert text[0] == "label"
    expected = torchmeans.KMeans(2, random_state=0).fit(np.load(data)).labels_
    np.testing.assert_array_equal(np.array(text[1:], dtype=np.int64), expected)


def test_unsupported_extension_is_refused_before_the_data_is_read(tmp_path):
    line = single_error_line(run_process("fit", "missing.npy", "-k", 2, "--labels", "out.txt",
                                         cwd=tmp_path))
    assert line == ("Error: --labels out.txt: cannot write file type '.txt'; "
                    "use .npy, .csv or .parquet")
    assert listing(tmp_path) == []


PATCHED_FIT = textwrap.dedent("""
    import sys
    import torchmeans
    from torchmeans.cli import main

    def fit(self, *args, **kwargs):
        raise {error}

    torchmeans.KMeans.fit = fit
    main(sys.argv[1:])
""")


def test_unexpected_exception_is_one_line_with_its_type(tmp_path, data):
    code = PATCHED_FIT.format(error="ZeroDivisionError('boom\\nsecond line')")
    line = single_error_line(run_process("fit", data.name, "-k", 2, "--labels", "l.npy",
                                         cwd=tmp_path, code=code))
    assert line == "Error: ZeroDivisionError: boom"
    assert listing(tmp_path) == ["data.npy"]
    debug = run_process("fit", data.name, "-k", 2, cwd=tmp_path, code=code,
                        env={"TORCHMEANS_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ZeroDivisionError: boom" in debug.stderr


def test_interrupt_exits_130_with_one_line(tmp_path, data):
    done = run_process("fit", data.name, "-k", 2, "--labels", "l.npy", cwd=tmp_path,
                       code=PATCHED_FIT.format(error="KeyboardInterrupt"))
    assert single_error_line(done, exit_code=130) == "Error: interrupted"
    assert listing(tmp_path) == ["data.npy"]


def test_damaged_model_is_one_line(tmp_path, data, model):
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated
    line = single_error_line(run_process("predict", model.name, data.name, "--out", "p.npy",
                                         cwd=tmp_path))
    assert line.startswith(f"Error: {model.name}: ")
    assert "corrupt or truncated" in line
    assert not (tmp_path / "p.npy").exists()


def test_usage_error_is_one_line_with_status_2(tmp_path, data):
    line = single_error_line(run_process("fit", data.name, "-k", 0, cwd=tmp_path), exit_code=2)
    assert "'-k' / '--n-clusters': 0 is not in the range x>=1" in line
    assert line.endswith("(see 'torchmeans fit --help')")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_on_a_terminal_keeps_json_on_stdout(tmp_path, data):
    """With stderr a terminal, the fit is verbose: its lines must never reach stdout."""
    primary, secondary = os.openpty()
    try:
        done = subprocess.run([*COMMAND, "fit", data.name, "-k", "2", "--seed", "0", "--json"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=secondary,
                              text=True, timeout=300)
        os.close(secondary)
        secondary = None
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        if secondary is not None:
            os.close(secondary)
    terminal = b"".join(chunks).decode()
    assert done.returncode == 0, terminal
    assert json.loads(done.stdout)["n_clusters"] == 2  # stdout is the JSON and only that
    assert "M points/s" in terminal  # the progress line went to the terminal
    assert "Converged" not in terminal + done.stdout


# -- every output option: refused up front, never written at another path -------------------

OUTPUT_OPTIONS = [  # (the command before the output, the option, a refused and a good name)
    (["fit", "{data}", "-k", "2"], "--out", "m.npy", "m.safetensors"),
    (["fit", "{data}", "-k", "2"], "--labels", "l.txt", "l.csv"),
    (["fit", "{data}", "-k", "2"], "--plot", "p.jpg", "p.png"),
    (["predict", "{model}", "{data}"], "--out", "p.txt", "p.parquet"),
    (["predict", "{model}", "{data}", "--transform"], "--out", "d.json", "d.npy"),
    (["sweep", "{data}", "--k", "2:3"], "--plot", "s.txt", "s.svg"),
    (["demo"], "--out", "d.txt", "d.pdf"),
]


def _command(template, tmp_path):
    missing = tmp_path / "missing.npy"  # read only after the checks: it must not matter
    return [part.format(data=missing, model=missing) for part in template]


@pytest.mark.parametrize(("template", "option", "refused", "good"), OUTPUT_OPTIONS)
def test_every_output_refuses_an_unknown_extension_first(cli, tmp_path, template, option,
                                                         refused, good):
    line = error_line(invoke(cli, *_command(template, tmp_path), option, tmp_path / refused))
    assert f"{option} {tmp_path / refused}: cannot write file type" in line
    assert line.endswith(("use .safetensors", "use .npy, .csv or .parquet",
                          "use .png, .svg or .pdf"))
    assert listing(tmp_path) == []


@pytest.mark.parametrize(("template", "option", "refused", "good"), OUTPUT_OPTIONS)
def test_every_output_refuses_a_missing_directory(cli, tmp_path, template, option, refused,
                                                  good):
    target = tmp_path / "absent" / good
    line = error_line(invoke(cli, *_command(template, tmp_path), option, target))
    assert f"{option} {target}: directory {tmp_path / 'absent'} does not exist" in line
    assert listing(tmp_path) == []  # not created either


def test_outputs_refuse_paths_that_cannot_be_written(cli, tmp_path, data):
    (tmp_path / "plain").write_text("a file")
    (tmp_path / "folder.npy").mkdir()
    assert "is not a directory" in error_line(
        invoke(cli, "fit", data, "-k", 2, "--labels", tmp_path / "plain" / "l.npy"))
    assert "is a directory" in error_line(
        invoke(cli, "fit", data, "-k", 2, "--labels", tmp_path / "folder.npy"))
    assert "a path without an extension" in error_line(
        invoke(cli, "fit", data, "-k", 2, "--labels", tmp_path / "labels"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write into any directory")
def test_outputs_refuse_a_read_only_directory(cli, tmp_path, data):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert "is not writable" in error_line(
            invoke(cli, "fit", data, "-k", 2, "--labels", locked / "l.npy"))
    finally:
        locked.chmod(0o700)


def test_an_output_may_not_be_an_input(cli, tmp_path, data, model):
    original = data.read_bytes()
    assert "is the same file as DATA" in error_line(
        invoke(cli, "fit", data, "-k", 2, "--labels", data))
    spelled = tmp_path / "sub" / ".." / data.name  # the same file, spelled otherwise
    (tmp_path / "sub").mkdir()
    assert "is the same file as DATA" in error_line(
        invoke(cli, "predict", model, data, "--out", spelled))
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.load(data), delimiter=",")
    assert "is the same file as DATA" in error_line(
        invoke(cli, "fit", csv, "-k", 2, "--labels", csv))
    weights = tmp_path / "w.npy"
    np.save(weights, np.ones(40))
    assert "is the same file as --sample-weight" in error_line(
        invoke(cli, "fit", data, "-k", 2, "--sample-weight", weights, "--labels", weights))
    assert data.read_bytes() == original
    np.testing.assert_array_equal(np.load(weights), np.ones(40))


def test_parquet_without_pyarrow_names_the_extra(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    line = error_line(invoke(cli, "fit", tmp_path / "missing.npy", "-k", 2, "--labels",
                             tmp_path / "l.parquet"))
    assert "pip install 'torchmeans[parquet]'" in line
    assert listing(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_scratch(cli, tmp_path, data, monkeypatch):
    labels = tmp_path / "labels.csv"
    labels.write_text("old\n")

    def broken(path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("label\n0\n")  # half of the file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savetxt", broken)
    line = error_line(invoke(cli, "fit", data, "-k", 2, "--labels", labels))
    assert "No space left on device" in line
    assert labels.read_text() == "old\n"
    assert listing(tmp_path) == ["data.npy", "labels.csv"]


def test_replace_atomically_keeps_the_old_file_on_any_failure(tmp_path):
    target = tmp_path / "out.npy"
    target.write_bytes(b"old")

    def interrupted(scratch):
        with open(scratch, "wb") as handle:
            handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_atomically(target, interrupted)
    assert target.read_bytes() == b"old"
    assert listing(tmp_path) == ["out.npy"]
    replace_atomically(target, lambda scratch: open(scratch, "wb").close())
    assert target.read_bytes() == b""
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


# -- devices: resolved and checked before anything is read -----------------------------------

def _absent_devices():
    devices = ["nope", "meta", "cuda:99"]
    if not torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        devices.append("mps")
    return devices


@pytest.mark.parametrize("device", _absent_devices())
@pytest.mark.parametrize("command", [["fit", "{data}", "-k", "2"],
                                     ["predict", "{model}", "{data}", "--out", "{out}"],
                                     ["sweep", "{data}", "--k", "2:3"], ["demo", "--out", "{out}"]])
def test_bad_devices_are_refused_before_reading(cli, tmp_path, device, command):
    missing = tmp_path / "missing.npy"
    args = [part.format(data=missing, model=missing, out=tmp_path / "o.png"
                        if command[0] == "demo" else tmp_path / "o.npy") for part in command]
    line = error_line(invoke(cli, *args, "--device", device))
    assert line.startswith(f"Error: --device {device}: ")
    assert listing(tmp_path) == []


def test_device_messages_say_what_is_wrong(cli, tmp_path):
    missing = tmp_path / "missing.npy"
    assert "not a device name; use auto, cpu, cuda, cuda:N, mps or xpu" in error_line(
        invoke(cli, "fit", missing, "-k", 2, "--device", "nope"))
    line = error_line(invoke(cli, "fit", missing, "-k", 2, "--device", "cuda:99"))
    if torch.cuda.is_available():
        assert f"this machine has {torch.cuda.device_count()} CUDA device" in line
    else:
        assert f"CUDA is not available on this machine (torch {torch.__version__})" in line


# -- data and model files --------------------------------------------------------------------

BAD_DATA = [  # (file name, bytes, what the message says)
    ("empty.npy", b"", "is empty (0 bytes)"),
    ("text.npy", b"1,2\n3,4\n", "is not a .npy array"),
    ("truncated.npy", None, "damaged or truncated .npy array"),
    ("bad.npz", b"not a zip", "is not a .npz archive"),
    ("bad.parquet", b"not parquet", "is not a readable parquet file"),
    ("latin1.csv", "1,2\n3,\xe9\n".encode("latin-1"), "is not UTF-8 text"),
    ("huge.csv", b"1," + b"2" * 200_000 + b"\n", "is not readable CSV"),  # over csv's limit
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_DATA)
def test_damaged_data_files_are_one_line(cli, tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        np.save(path, np.ones((100, 3)))
        content = path.read_bytes()[:200]  # the header and a part of the data
    path.write_bytes(content)
    line = error_line(invoke(cli, "fit", path, "-k", 2))
    assert line.startswith(f"Error: {path}: ")
    assert message in line


def test_data_directory_and_wrong_width_at_predict(cli, tmp_path, model):
    folder = tmp_path / "folder.npy"
    folder.mkdir()
    assert "is a directory" in error_line(invoke(cli, "fit", folder, "-k", 2))
    wide = tmp_path / "wide.csv"
    wide.write_text("a,b,c\n1,2,3\n4,5,6\n")
    out = tmp_path / "p.npy"
    line = error_line(invoke(cli, "predict", model, wide, "--out", out))
    assert f"{wide}: has 3 features, but {model} was fitted on 2" in line
    assert not out.exists()


def test_damaged_or_foreign_models_at_info_and_predict(cli, tmp_path, data, model):
    model.write_bytes(model.read_bytes()[:-10])
    assert "corrupt or truncated" in error_line(invoke(cli, "info", model))
    assert "corrupt or truncated" in error_line(invoke(cli, "info", data))  # data as a model
    assert "no such model file" in error_line(
        invoke(cli, "predict", tmp_path / "none.safetensors", data, "--out", tmp_path / "p.npy"))


# -- parameters out of range -----------------------------------------------------------------

@pytest.mark.parametrize(("args", "exit_code", "message"), [
    (["fit", "{data}", "-k", "0"], 2, "0 is not in the range x>=1"),
    (["fit", "{data}", "-k", "2", "--max-iter", "0"], 2, "--max-iter"),
    (["fit", "{data}", "-k", "2", "--tol", "-1"], 2, "--tol"),
    (["fit", "{data}", "-k", "2", "--n-init", "0"], 1, "--n-init must be"),
    (["fit", "{data}", "-k", "41"], 1, "should be >= n_clusters=41"),
    (["fit", "{data}", "-k", "2", "--bogus"], 2, "No such option '--bogus'"),
    (["sweep", "{data}", "--k", "1:3"], 1, "--k must give values >= 2"),
    (["sweep", "{data}", "--k", "2:60"], 1, "n_samples"),
    (["sweep", "{data}", "--silhouette-sample", "1"], 2, "--silhouette-sample"),
    (["demo", "--seed", "-1"], 2, "--seed"),
    (["fitt"], 2, "No such command 'fitt'"),
])
def test_parameters_out_of_range_are_one_line(cli, data, args, exit_code, message):
    line = error_line(invoke(cli, *[a.format(data=data) for a in args]), exit_code=exit_code)
    assert message in line
