"""The ``torchmeans`` command line, through click's test runner (and one real subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import make_blobs

import torchmeans
from torchmeans.cli import build_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMMANDS = ["fit", "predict", "sweep", "info", "demo", "env"]


@pytest.fixture(scope="module")
def cli():
    return build_cli()


def run(cli, *args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input,
                              catch_exceptions=False)


@pytest.fixture
def blobs_csv(tmp_path):
    X, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.6, random_state=0)
    path = tmp_path / "blobs.csv"
    np.savetxt(path, X, delimiter=",", header="x,y", comments="")
    return path, X


def one_line_error(result):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli, command):
    result = run(cli, command, "--help")
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: {cli.name or 'cli'} {command}") or (
        f" {command} " in result.output.splitlines()[0])


def test_fit_writes_model_labels_and_plot(cli, blobs_csv, tmp_path):
    path, X = blobs_csv
    model, labels, plot = tmp_path / "m.safetensors", tmp_path / "l.npy", tmp_path / "c.png"
    result = run(cli, "fit", path, "-k", 4, "--seed", 0, "--out", model, "--labels", labels,
                 "--plot", plot, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["n_samples"] == 300
    assert summary["n_features"] == 2
    assert summary["n_clusters"] == 4
    assert summary["cluster_size_min"] == summary["cluster_size_max"] == 75
    reference = torchmeans.KMeans(4, random_state=0).fit(X)
    np.testing.assert_array_equal(np.load(labels), reference.labels_)
    assert summary["inertia"] == pytest.approx(reference.inertia_)
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert torchmeans.load(model).n_features_in_ == 2


def test_fit_text_summary_and_options(cli, blobs_csv):
    path, _ = blobs_csv
    result = run(cli, "fit", path, "-k", 3, "--init", "random", "--n-init", 2, "--max-iter", 50,
                 "--algorithm", "hamerly", "--dtype", "float32", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "n_clusters: 3" in result.output
    assert "device: cpu" in result.output


def test_csv_on_stdin_and_columns(cli):
    text = "name,a,b\nfirst,1,2\nsecond,1.1,2.1\nthird,9,9\nfourth,9.2,9.1\n"
    result = run(cli, "fit", "-", "-k", 2, "--columns", "a,b", "--json", input=text)
    assert json.loads(result.output)["n_features"] == 2  # the text column is never parsed
    assert "column name: 'first' is not a number" in one_line_error(
        run(cli, "fit", "-", "-k", 2, input=text))
    assert "no column 'c'" in one_line_error(run(cli, "fit", "-", "-k", 2, "--columns", "a,c",
                                                 input=text))
    numeric = "1,2\n1.1,2.1\n9,9\n9.2,9.1\n"  # no header
    result = run(cli, "fit", "-", "-k", 2, "--json", "--columns", "1", input=numeric)
    summary = json.loads(result.output)
    assert summary["n_samples"] == 4
    assert summary["n_features"] == 1


def test_sample_weight_column_and_file(cli, tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("id,x,y,w\na,0,0,1\nb,0,1,1\nc,10,10,5\nd,10,11,1\n")
    expected = torchmeans.KMeans(2, random_state=0).fit(
        np.array([[0, 0], [0, 1], [10, 10], [10, 11.0]]), sample_weight=[1, 1, 5, 1])
    for spec in ("w", "3"):
        result = run(cli, "fit", path, "-k", 2, "--columns", "x,y", "--sample-weight", spec,
                     "--seed", 0, "--json")
        summary = json.loads(result.output)
        assert summary["n_features"] == 2
        assert summary["inertia"] == pytest.approx(expected.inertia_)
    weights = tmp_path / "weights.npy"
    np.save(weights, np.ones(4))
    data = tmp_path / "d.npy"
    np.save(data, np.array([[0, 0, 1], [0, 1, 1], [10, 10, 5], [10, 11.0, 1]]))
    summary = json.loads(run(cli, "fit", data, "-k", 2, "--sample-weight", "2", "--seed", 0,
                             "--json").output)
    assert summary["inertia"] == pytest.approx(expected.inertia_)
    assert run(cli, "fit", data, "-k", 2, "--sample-weight", weights).exit_code == 0
    np.save(weights, np.ones(3))
    assert "expected 4 weights" in one_line_error(run(cli, "fit", data, "-k", 2,
                                                      "--sample-weight", weights))
    assert "neither a file nor a column" in one_line_error(
        run(cli, "fit", data, "-k", 2, "--sample-weight", "nothing"))


def test_predict_transform_and_info(cli, blobs_csv, tmp_path):
    path, X = blobs_csv
    model = tmp_path / "m.safetensors"
    run(cli, "fit", path, "-k", 4, "--seed", 0, "--out", model)
    km = torchmeans.load(model)
    out = tmp_path / "p.npy"
    assert run(cli, "predict", model, path, "--out", out).exit_code == 0
    np.testing.assert_array_equal(np.load(out), km.predict(X))
    assert run(cli, "predict", model, path, "--out", out, "--transform").exit_code == 0
    np.testing.assert_allclose(np.load(out), km.transform(X))
    info = json.loads(run(cli, "info", model, "--json").output)
    assert info["n_clusters"] == 4
    assert info["training"]["cluster_sizes"] == [75] * 4
    assert "n_clusters: 4" in run(cli, "info", model).output


def test_sweep_reports_scores_and_suggests_k(cli, blobs_csv, tmp_path):
    path, _ = blobs_csv
    plot = tmp_path / "elbow.png"
    result = run(cli, "sweep", path, "--k", "2:6", "--plot", plot, "--json")
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.output)
    assert [p["n_clusters"] for p in sweep["points"]] == [2, 3, 4, 5, 6]
    assert sweep["suggested_k"] == 4
    assert sweep["elbow_k"] == 4
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    text = run(cli, "sweep", path, "--k", "2,4", "--quiet").output
    assert "suggested k (best silhouette): 4" in text


def test_env_lists_versions(cli):
    details = json.loads(run(cli, "env", "--json").output)
    assert details["torch"] != "not installed"
    assert details["devices"][0] == "cpu"
    assert "native_kernel" in details


def test_demo_writes_png(cli, tmp_path):
    out = tmp_path / "blobs.png"
    assert run(cli, "demo", "--out", out).exit_code == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(("content", "message"), [
    ("1,2\n3,x\n", "row 2, column 1: 'x' is not a number"),
    ("1,2\n3,4,5\n", "row 2 has 3 fields, expected 2"),
    ("", "is empty"),
    ("a,b\n", "has a header but no rows"),
])
def test_bad_csv_gives_one_line_error(cli, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    line = one_line_error(run(cli, "fit", path, "-k", 2))
    assert str(path) in line
    assert message in line


def test_bad_arrays_and_paths(cli, tmp_path):
    nan = tmp_path / "nan.npy"
    X = np.ones((5, 3))
    X[3, 1] = np.nan
    np.save(nan, X)
    assert "row 3, column 1 is nan" in one_line_error(run(cli, "fit", nan, "-k", 2))
    assert "no such file" in one_line_error(run(cli, "fit", tmp_path / "missing.npy", "-k", 2))
    odd = tmp_path / "data.xyz"
    odd.write_text("1,2")
    assert "unknown file type" in one_line_error(run(cli, "fit", odd, "-k", 2))
    archive = tmp_path / "two.npz"
    np.savez(archive, a=np.ones((4, 2)), b=np.zeros((4, 2)))
    assert "--array" in one_line_error(run(cli, "fit", archive, "-k", 2))
    assert run(cli, "fit", archive, "-k", 2, "--array", "a").exit_code == 0
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "not a numeric .npy array" in one_line_error(run(cli, "fit", objects, "-k", 1))


def test_bad_parameters_and_models(cli, blobs_csv, tmp_path):
    path, _ = blobs_csv
    assert "n_samples=300 should be >= n_clusters=500" in one_line_error(
        run(cli, "fit", path, "-k", 500))
    assert "--n-init must be" in one_line_error(run(cli, "fit", path, "-k", 2, "--n-init", "x"))
    assert "--k must be" in one_line_error(run(cli, "sweep", path, "--k", "a:b"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a model at all")
    assert "corrupt or truncated" in one_line_error(
        run(cli, "predict", corrupt, path, "--out", tmp_path / "o.npy"))
    model = tmp_path / "m.safetensors"
    run(cli, "fit", path, "-k", 2, "--out", model)
    wide = tmp_path / "wide.npy"
    np.save(wide, np.ones((4, 5)))
    assert "5 features" in one_line_error(
        run(cli, "predict", model, wide, "--out", tmp_path / "o.npy"))
    usage = run(cli, "fit", path)  # -k missing: a usage error
    assert usage.exit_code == 2


def test_parquet_columns_and_embeddings(cli, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, _ = make_blobs(n_samples=60, centers=3, random_state=1)
    table = pa.table({"x": X[:, 0], "y": X[:, 1]})
    pq.write_table(table, tmp_path / "t.parquet")
    summary = json.loads(run(cli, "fit", tmp_path / "t.parquet", "-k", 3, "--json").output)
    assert summary["n_features"] == 2
    embeddings = pa.table({"emb": pa.array(list(X), type=pa.list_(pa.float64(), 2))})
    pq.write_table(embeddings, tmp_path / "e.parquet")
    summary = json.loads(run(cli, "fit", tmp_path / "e.parquet", "-k", 3, "--json").output)
    assert summary["n_features"] == 2
    pq.write_table(pa.table({"name": ["a"] * 60, "x": X[:, 0]}), tmp_path / "s.parquet")
    assert "non-numeric columns ['name']" in one_line_error(
        run(cli, "fit", tmp_path / "s.parquet", "-k", 3))


def test_end_to_end_in_new_processes(blobs_csv, tmp_path):
    path, _ = blobs_csv
    model, labels = tmp_path / "m.safetensors", tmp_path / "fit.npy"
    command = [sys.executable, "-m", "torchmeans"]
    subprocess.run([*command, "fit", str(path), "-k", "4", "--seed", "1", "--out", str(model),
                    "--labels", str(labels), "--quiet"], check=True, timeout=300,
                   capture_output=True)
    predicted = tmp_path / "predicted.npy"
    done = subprocess.run([*command, "predict", str(model), str(path), "--out", str(predicted)],
                          timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(predicted), np.load(labels))
    failed = subprocess.run([*command, "predict", str(tmp_path / "none.safetensors"), str(path),
                             "--out", str(predicted)], timeout=300, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.strip().count("\n") == 0
    assert "no such model file" in failed.stderr


def test_progress_line_from_the_verbose_lines():
    import io

    from torchmeans.cli import _Progress, _ProgressSink

    stream = io.StringIO()
    progress = _Progress(stream, n_samples=1000)
    sink = _ProgressSink(progress)  # scikit-learn's lines, as KMeans(verbose=1) prints them
    sink.write("Initialization complete\nIteration 0, inertia 20.5.\nIter")
    assert stream.getvalue().startswith("\rIteration 0, inertia 20.5, ")  # no final '.'
    sink.write("ation 1, inertia 12.5\nConverged at iteration 1: strict convergence.\n")
    progress.close()
    redraws = stream.getvalue().split("\r")[1:]
    assert [line.split(", ")[0] for line in redraws] == ["Iteration 0", "Iteration 1"]
    assert all(" M points/s\033[K" in line for line in redraws)
    assert stream.getvalue().endswith("\n")
    assert "Converged" not in stream.getvalue()
    assert "Initialization" not in stream.getvalue()


def test_no_progress_when_stderr_is_not_a_terminal(cli, blobs_csv):
    path, _ = blobs_csv  # CliRunner's stderr is not a terminal: no progress at all
    result = CliRunner().invoke(cli, ["fit", str(path), "-k", "4"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "teration" not in result.output
    assert result.stderr == ""


@pytest.fixture
def terminal(monkeypatch):
    """Make the command line believe stderr is a terminal (CliRunner's is not)."""
    import torchmeans.cli

    monkeypatch.setattr(torchmeans.cli, "_stderr_is_terminal", lambda: True)


def test_verbose_fit_keeps_json_valid(cli, blobs_csv, terminal):
    path, _ = blobs_csv
    result = CliRunner().invoke(cli, ["fit", str(path), "-k", "4", "--seed", "0", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_clusters"] == 4  # whatever the fit printed or logged
    assert "M points/s" in result.stderr
    assert "onverged" not in result.stdout + result.stderr


def test_estimator_prints_never_reach_stdout(cli, blobs_csv, terminal, monkeypatch):
    """scikit-learn's verbose lines on stdout: Iteration lines become progress, others vanish."""
    path, _ = blobs_csv
    original = torchmeans.KMeans.fit
    verbosity = []

    def chatty_fit(self, X, y=None, sample_weight=None):
        verbosity.append(self.verbose)
        print("Initialization complete")
        for i in range(3):
            print(f"Iteration {i}, inertia {10.0 - i}")
        print("Converged at iteration 2: center shift 1e-05 within tolerance 0.0001.")
        return original(self, X, y, sample_weight=sample_weight)

    monkeypatch.setattr(torchmeans.KMeans, "fit", chatty_fit)
    result = CliRunner().invoke(cli, ["fit", str(path), "-k", "4", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_clusters"] == 4
    assert "\rIteration 2, inertia 8.0, " in result.stderr
    assert "Initialization complete" not in result.output
    assert "Converged" not in result.output
    quiet = CliRunner().invoke(cli, ["fit", str(path), "-k", "4", "--json", "--quiet"],
                               catch_exceptions=False)
    assert json.loads(quiet.stdout)["n_clusters"] == 4
    assert quiet.stderr == ""  # --quiet: no progress, and the prints are dropped
    assert verbosity == [1, 0]  # made verbose for the progress line only


def read_back(path):
    """Return the header (None for .npy) and the values of an array output."""
    if path.suffix == ".npy":
        return None, np.load(path)
    if path.suffix == ".csv":
        header = path.read_text().splitlines()[0]
        return header, np.loadtxt(path, delimiter=",", skiprows=1)
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(path)
    return ",".join(table.column_names), np.column_stack(
        [table.column(c).to_numpy() for c in table.column_names]).squeeze()


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_labels_and_distances_in_the_format_the_extension_names(cli, blobs_csv, tmp_path,
                                                                suffix):
    path, X = blobs_csv
    model, labels = tmp_path / "m.safetensors", tmp_path / f"labels{suffix}"
    result = run(cli, "fit", path, "-k", 4, "--seed", 0, "--out", model, "--labels", labels,
                 "--json")
    assert json.loads(result.output)["labels"] == str(labels)
    km = torchmeans.load(model)
    header, values = read_back(labels)
    assert header in (None, "label")
    np.testing.assert_array_equal(values, km.predict(X))
    predicted, distances = tmp_path / f"p{suffix}", tmp_path / f"d{suffix}"
    assert run(cli, "predict", model, path, "--out", predicted).exit_code == 0
    np.testing.assert_array_equal(read_back(predicted)[1], km.predict(X))
    assert run(cli, "predict", model, path, "--out", distances, "--transform").exit_code == 0
    header, values = read_back(distances)
    assert header in (None, "distance_0,distance_1,distance_2,distance_3")
    np.testing.assert_allclose(values, km.transform(X), rtol=1e-12)  # text keeps all digits
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(["blobs.csv", "m.safetensors", labels.name, predicted.name,
                              distances.name])  # nothing else: no .npy appended, no scratch


@pytest.mark.parametrize(("suffix", "signature"), [(".png", PNG_SIGNATURE), (".svg", b"<?xml"),
                                                   (".pdf", b"%PDF")])
def test_plots_in_the_format_the_extension_names(cli, blobs_csv, tmp_path, suffix, signature):
    path, _ = blobs_csv
    plot = tmp_path / f"clusters{suffix}"
    assert run(cli, "fit", path, "-k", 4, "--plot", plot, "--quiet").exit_code == 0
    assert plot.read_bytes().startswith(signature)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.csv", plot.name]


def test_cosine_fit_and_sweep(cli, tmp_path):
    rng = np.random.default_rng(0)
    axes = np.eye(3) * 5
    X = axes[rng.integers(3, size=90)] + rng.normal(scale=0.3, size=(90, 3))
    X *= rng.uniform(0.5, 20, size=(90, 1))  # lengths do not matter for cosine
    path = tmp_path / "dirs.npy"
    np.save(path, X)
    model = tmp_path / "m.safetensors"
    summary = json.loads(run(cli, "fit", path, "-k", 3, "--metric", "cosine", "--seed", 0,
                             "--out", model, "--json").output)
    expected = torchmeans.KMeans(3, metric="cosine", random_state=0).fit(X)
    assert summary["metric"] == "cosine"
    assert summary["inertia"] == pytest.approx(expected.inertia_)
    assert torchmeans.load(model).metric == "cosine"
    sweep = json.loads(run(cli, "sweep", path, "--k", "2:5", "--metric", "cosine",
                           "--json").output)
    assert sweep["suggested_k"] == 3


def test_backend_and_precision_options(cli, tmp_path):
    X = np.random.default_rng(1).normal(size=(400, 6)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    model = tmp_path / "m.safetensors"
    summary = json.loads(run(cli, "fit", path, "-k", 5, "--seed", 0, "--algorithm", "lloyd",
                             "--backend", "torch", "--precision", "fast", "--out", model,
                             "--json").output)
    expected = torchmeans.KMeans(5, random_state=0, algorithm="lloyd", backend="torch").fit(X)
    assert summary["inertia"] == pytest.approx(expected.inertia_, rel=1e-6)
    loaded = torchmeans.load(model)
    assert (loaded.backend, loaded.precision) == ("torch", "fast")
    bad = CliRunner().invoke(cli, ["fit", str(path), "-k", "2", "--precision", "half"])
    assert bad.exit_code == 2
    assert "half" in bad.output


def test_max_samples_per_cluster_option(cli, tmp_path):
    X, _ = make_blobs(n_samples=2000, centers=4, n_features=3, random_state=0)
    path, model = tmp_path / "x.npy", tmp_path / "m.safetensors"
    np.save(path, X)
    summary = json.loads(run(cli, "fit", path, "-k", 4, "--seed", 0,
                             "--max-samples-per-cluster", 50, "--out", model, "--json").output)
    expected = torchmeans.KMeans(4, random_state=0, algorithm="auto",
                                 max_samples_per_cluster=50).fit(X)
    assert summary["fitted_on_rows"] == 200
    assert summary["n_samples"] == 2000
    assert summary["inertia"] == pytest.approx(expected.inertia_, rel=1e-12)
    assert torchmeans.load(model).max_samples_per_cluster == 50
    full = json.loads(run(cli, "fit", path, "-k", 4, "--seed", 0,
                          "--max-samples-per-cluster", 500, "--json").output)
    assert "fitted_on_rows" not in full
    bad = CliRunner().invoke(cli, ["fit", str(path), "-k", "2", "--max-samples-per-cluster", "0"])
    assert bad.exit_code == 2


def test_backend_choices_are_the_registrys(cli, monkeypatch):
    from torchmeans import backends

    def choices(group):
        return tuple(next(p for p in group.commands["fit"].params if p.name == "backend")
                     .type.choices)

    assert choices(cli) == backends.BACKENDS == ("auto", *backends.REGISTRY)
    # A backend added to the registry is a choice without an edit of the CLI.
    monkeypatch.setattr(backends, "BACKENDS", (*backends.BACKENDS, "extra"))
    assert choices(build_cli())[-1] == "extra"


def test_csv_first_row_with_a_missing_value_is_data_not_a_header(tmp_path):
    from torchmeans.io.data_files import DataFileError, read_matrix

    path = tmp_path / "na.csv"
    path.write_text("1.0,NA\n2.0,3.0\n4.0,5.0\n")
    with pytest.raises(DataFileError, match="row 1, column 1: 'NA' is not a number"):
        read_matrix(str(path))
