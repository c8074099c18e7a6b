"""The ``torchmeans`` command line (install the extra: ``pip install "torchmeans[cli]"``).

Commands: ``fit``, ``predict``, ``sweep``, ``info``, ``demo`` and ``env``; each has ``--help``.

Failures are one line on stderr, ``Error: ...``, and a non-zero exit status: 1 for a
failure (data, model file, device, output path; an unexpected exception reads
``Error: <type>: <message>``), 2 for a usage error (an unknown option, a value out of
range), 130 for an interrupt. Set ``TORCHMEANS_DEBUG=1`` to see the traceback: an
unexpected exception then propagates, and for the others the traceback of the cause is
printed above the line. Warnings are one line each too (``Warning: ...``).

Checks come before work: the output paths (their extension names the format; the
directory must exist and be writable; an output may not be an input) and the device
are checked before any data is read, so a mistyped option costs nothing and nothing is
ever written at another path. Outputs are written atomically (a temporary file beside
the target, then a rename).

Progress goes to stderr, only on a terminal and without ``--quiet``; results go to
stdout (``--json`` for machine-readable output) and nothing else does: whatever the
estimators print during a fit is captured, its ``Iteration`` lines becoming the
progress line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["build_cli", "main"]


def _click() -> Any:
    try:
        import click
    except ImportError:  # pragma: no cover - exercised only without the extra
        sys.exit("torchmeans: the command line needs click: pip install 'torchmeans[cli]'")
    return click


DEBUG_VARIABLE = "TORCHMEANS_DEBUG"
"""Environment variable: set to 1 to see tracebacks instead of one-line errors."""

MODEL_OUTPUTS = (".safetensors",)
FIGURE_OUTPUTS = (".png", ".svg", ".pdf")


def _debug() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    """Return the first non-empty line of ``text`` (torch errors can carry a C++ stack)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _device(name: str | None, option: str = "--device") -> str | None:
    """Resolve and check a ``--device`` value before any data is read.

    ``auto`` (and ``None``) leave the choice to the estimator. An explicit device must
    exist on this machine: ``torch.device`` parses the name, and CUDA, MPS and XPU
    devices are checked for availability and index, because torch would otherwise
    fail deep inside the fit (a long traceback, after the data was read).

    Raises
    ------
    ValueError
        One line naming the option, the value and what this machine has.
    """
    import torch

    from torchmeans.core.validation import check_device_available

    if name is None or name == "auto":
        return None
    where = f"{option} {name}"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{where}: not a device name; use auto, cpu, cuda, cuda:N, mps "
                         "or xpu") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(f"{where}: device type {device.type!r} is not supported; use auto, "
                         "cpu, cuda, cuda:N, mps or xpu")
    try:
        check_device_available(device)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return str(device)


def _dtype(X: Any, name: str) -> Any:
    import numpy as np
    import torch

    if name == "auto":
        return X
    if name in ("float16", "bfloat16"):  # half precision: as a tensor (numpy has no bfloat16)
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(
            getattr(torch, name))
    return np.ascontiguousarray(X, dtype=name)


def _sizes(labels: Any, n_clusters: int) -> list[int]:
    import numpy as np

    values = labels.cpu().numpy() if hasattr(labels, "cpu") else np.asarray(labels)
    return np.bincount(values.astype(np.int64), minlength=n_clusters).tolist()


class _Progress:
    """Render a fit's per-iteration messages as one updating line on ``stream``.

    The messages are scikit-learn's ``Iteration 3, inertia 12.5`` (what ``verbose=1``
    prints on stdout); other messages are dropped.
    """

    def __init__(self, stream: Any, n_samples: int) -> None:
        self.stream, self.n_samples = stream, n_samples
        self.start = time.perf_counter()
        self.iterations = 0

    def show(self, message: str) -> None:
        """Redraw the line when ``message`` reports an iteration; ignore it otherwise."""
        message = message.strip()
        if not message.startswith("Iteration "):
            return
        self.iterations += 1
        rate = self.iterations * self.n_samples / max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(f"\r{message.rstrip('.')}, {rate / 1e6:.2f} M points/s\033[K")
        self.stream.flush()

    def close(self) -> None:
        """End the line, so that what follows starts on a fresh one."""
        if self.iterations:
            self.stream.write("\n")
            self.stream.flush()
            self.iterations = 0


class _ProgressSink(io.TextIOBase):
    """Stand-in for stdout during a fit: lines go to a :class:`_Progress`, or nowhere.

    The command's stdout carries its results (``--json`` must stay valid JSON), so
    nothing an estimator prints may reach it.
    """

    def __init__(self, progress: _Progress | None) -> None:
        super().__init__()
        self.progress = progress
        self.pending = ""

    def writable(self) -> bool:
        """Accept writes (``print`` checks nothing, but ``TextIOBase`` users do)."""
        return True

    def write(self, text: str) -> int:
        """Pass each complete line on; keep a partial one until its end arrives."""
        *lines, self.pending = (self.pending + text).split("\n")
        if self.progress is not None:
            for line in lines:
                self.progress.show(line)
        return len(text)

    def close(self) -> None:
        """Pass on a last line without its newline."""
        if self.pending and self.progress is not None:
            self.progress.show(self.pending)
        self.pending = ""
        super().close()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


@contextlib.contextmanager
def _captured_output(quiet: bool = True, n_samples: int = 0,
                     estimator: Any = None) -> Iterator[_Progress | None]:
    """Keep what runs inside off stdout; on a terminal, show its iterations as progress.

    With progress (stderr a terminal, not ``--quiet``, an ``estimator`` given) the
    estimator is made verbose, and its ``Iteration`` lines, printed on stdout, become
    the one updating line on stderr; everything else it prints is dropped.
    """
    show = estimator is not None and not quiet and _stderr_is_terminal()
    progress = _Progress(sys.stderr, n_samples) if show else None
    sink = _ProgressSink(progress)
    if progress is not None:
        estimator.set_params(verbose=1)
    try:
        with contextlib.redirect_stdout(sink):
            yield progress
    finally:
        sink.close()
        if progress is not None:
            progress.close()


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Print a warning as one line on stderr (no source line, no file name)."""
    sys.stderr.write(f"Warning: {_one_line(str(message))}\n")


def _numpy(values: Any) -> Any:
    import numpy as np

    return values.cpu().numpy() if hasattr(values, "cpu") else np.asarray(values)


def build_cli() -> Any:
    """Build the click command group (click is imported only here).

    The group's ``main`` turns every failure into one line on stderr (see the module
    docstring), also under click's test runner, which calls it the same way.
    """
    click = _click()
    from torchmeans.backends import BACKENDS  # the registry's names: a new backend needs no edit

    class Failure(click.ClickException):
        """A failure with its own exit status (130 for an interrupt)."""

        def __init__(self, message: str, exit_code: int = 1) -> None:
            super().__init__(message)
            self.exit_code = exit_code

    no_args_help = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2

    class Group(click.Group):
        """A click group whose failures are one line on stderr, whatever raised them."""

        def invoke(self, ctx: Any) -> Any:
            """Run the command; an interrupt or unexpected exception becomes a Failure."""
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.exceptions.Exit, click.Abort,
                    BrokenPipeError):
                raise  # click's own (and a closed stdout, which click silences)
            except KeyboardInterrupt as error:
                raise Failure("interrupted", 130) from error
            except Exception as error:
                if _debug():
                    raise
                message = _one_line(str(error))
                raise Failure(f"{type(error).__name__}: {message}" if message
                              else type(error).__name__) from error

        def main(self, args: Any = None, prog_name: str | None = None,
                 complete_var: str | None = None, standalone_mode: bool = True,
                 **extra: Any) -> Any:
            """Run the command line; print a failure as one line and exit with its status."""
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                try:
                    result = super().main(args, prog_name, complete_var,
                                          standalone_mode=False, **extra)
                except no_args_help as error:  # bare ``torchmeans``: the help, as click does
                    error.show()
                    code = error.exit_code
                except click.ClickException as error:
                    code = _show_failure(click, error)
                except click.Abort:  # an interrupt while click parsed the arguments
                    click.echo("Error: interrupted", err=True)
                    code = 130
                else:
                    code = result if isinstance(result, int) else 0
            if not standalone_mode:
                return code
            sys.exit(code)

    def fail(error: Exception) -> Any:
        return click.ClickException(_one_line(str(error)) or repr(error))

    def read(path: str, columns: str | None, array: str | None) -> tuple[Any, list | None]:
        from torchmeans.io.data_files import read_matrix

        try:
            return read_matrix(path, columns=columns, array=array)
        except (ValueError, OSError) as error:
            raise fail(error) from error

    def output(path: str | None, option: str, suffixes: tuple[str, ...],
               inputs: list[tuple[str, str | None]]) -> None:
        """Check an output path up front; add it to ``inputs`` so outputs stay distinct."""
        from torchmeans.io.data_files import check_output

        if path is None:
            return
        try:
            check_output(path, option, suffixes, inputs=inputs)
        except ValueError as error:
            raise fail(error) from error
        inputs.append((option, path))

    def device_of(name: str | None) -> str | None:
        try:
            return _device(name)
        except ValueError as error:
            raise fail(error) from error

    def needs_matplotlib(option: str) -> None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise fail(ValueError(f"{option} needs matplotlib: pip install 'torchmeans[cli]'"))

    data_argument = click.argument("data", type=str)
    columns_option = click.option("--columns", default=None,
                                  help="Comma-separated column names or 0-based indices to use.")
    array_option = click.option("--array", default=None, help="Array name inside an .npz file.")
    device_option = click.option("--device", default="auto", show_default=True,
                                 help="auto, cpu, cuda, cuda:1, mps, ...")
    json_option = click.option("--json", "as_json", is_flag=True,
                               help="Print machine-readable JSON instead of text.")
    quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress display.")

    @click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]},
                 epilog=f"A failure is one line on stderr (Error: ...); set {DEBUG_VARIABLE}=1 "
                        "for the traceback.")
    @click.version_option(package_name="torchmeans")
    def cli() -> None:
        """Exact k-means on PyTorch: fit, predict, choose k, inspect models."""

    @cli.command()
    @data_argument
    @click.option("-k", "--n-clusters", "n_clusters", type=click.IntRange(min=1), required=True,
                  help="Number of clusters.")
    @click.option("--init", type=click.Choice(["k-means++", "k-means||", "random"]),
                  default="k-means++",
                  show_default=True, help="How to seed the centers.")
    @click.option("--n-init", default="auto", show_default=True,
                  help="Number of initializations ('auto' or an integer).")
    @click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
    @click.option("--tol", type=click.FloatRange(min=0), default=1e-4, show_default=True)
    @click.option("--algorithm", type=click.Choice(["lloyd", "hamerly", "yinyang", "elkan",
                                                    "auto"]), default="auto", show_default=True)
    @click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default="euclidean",
                  show_default=True, help="cosine: spherical k-means on unit-normalised rows.")
    @click.option("--max-samples-per-cluster", type=click.IntRange(min=1), default=None,
                  help="Fit on at most k times this many rows drawn at random, then label "
                       "all rows (faster, not exact; default: every row).")
    @click.option("--backend", type=click.Choice(BACKENDS),
                  default="auto", show_default=True,
                  help="Lloyd pass: native C kernel (CPU), Triton kernels (CUDA) or torch.")
    @click.option("--precision", type=click.Choice(["exact", "fast"]), default="exact",
                  show_default=True,
                  help="fast: certified low-precision distance products (same labels).")
    @device_option
    @click.option("--dtype", type=click.Choice(["auto", "float32", "float64", "float16",
                                                "bfloat16"]), default="auto", show_default=True,
                  help="Compute dtype (auto: the file's float type).")
    @click.option("--seed", type=click.IntRange(min=0), default=None,
                  help="Random seed (default: unseeded).")
    @click.option("--sample-weight", default=None,
                  help="A column of DATA (name or index) or a file with one weight per row.")
    @columns_option
    @array_option
    @click.option("--out", default=None, help="Write the model (.safetensors).")
    @click.option("--labels", "labels_path", default=None,
                  help="Write the labels: .npy, .csv (header 'label') or .parquet.")
    @click.option("--plot", default=None,
                  help="Write a picture of the clusters (.png, .svg or .pdf; PCA to 2-D when "
                       "DATA has more features).")
    @json_option
    @quiet_option
    def fit(data: str, n_clusters: int, init: str, n_init: str, max_iter: int, tol: float,
            algorithm: str, metric: str, max_samples_per_cluster: int | None, backend: str,
            precision: str, device: str, dtype: str, seed: int | None,
            sample_weight: str | None, columns: str | None, array: str | None,
            out: str | None, labels_path: str | None, plot: str | None, as_json: bool,
            quiet: bool) -> None:
        """Cluster DATA (.npy, .npz, .csv, .tsv, .parquet, or - for CSV on stdin)."""
        from torchmeans.io.data_files import ARRAY_OUTPUTS, write_array

        weight_file = sample_weight is not None and Path(sample_weight).is_file()
        files: list[tuple[str, str | None]] = [
            ("DATA", data), ("--sample-weight", sample_weight if weight_file else None)]
        output(out, "--out", MODEL_OUTPUTS, files)
        output(labels_path, "--labels", ARRAY_OUTPUTS, files)
        output(plot, "--plot", FIGURE_OUTPUTS, files)
        if plot is not None:
            needs_matplotlib("--plot")
        n_init_value: int | str = n_init if n_init == "auto" else _positive_int(n_init, fail)
        device_name = device_of(device)

        from torchmeans import KMeans

        rank, world = _process_group()
        weight_column = None
        if sample_weight is not None and not weight_file:
            weight_column = sample_weight  # a column of DATA
        wanted = columns if weight_column is None or columns is None else (
            f"{columns},{weight_column}")
        X, names = read(data, wanted, array)
        weight = None
        if weight_column is not None:
            X, names, weight = _split_weight_column(X, names, weight_column,
                                                    last=columns is not None, data=data,
                                                    fail=fail)
        elif sample_weight is not None:
            from torchmeans.io.data_files import read_vector

            try:
                weight = read_vector(sample_weight, len(X))
            except (ValueError, OSError) as error:
                raise fail(error) from error
        if world > 1:  # under torchrun: this rank's contiguous rows
            first, last = rank * len(X) // world, (rank + 1) * len(X) // world
            X = X[first:last]
            weight = None if weight is None else weight[first:last]
        km = KMeans(n_clusters, init=init, n_init=n_init_value, max_iter=max_iter, tol=tol,
                    algorithm=algorithm, device=device_name, random_state=seed,
                    metric=metric, backend=backend, precision=precision, verbose=0,
                    max_samples_per_cluster=max_samples_per_cluster)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught, _captured_output(
                    quiet, len(X), km):
                warnings.simplefilter("always")
                km.fit(_dtype(X, dtype), sample_weight=weight)
        except (ValueError, RuntimeError, TypeError) as error:
            raise fail(error) from error
        for warning in caught:  # one line each, on stderr, after the progress line
            click.echo(f"Warning: {_one_line(str(warning.message))}", err=True)
        seconds = time.perf_counter() - start
        from torchmeans.core.validation import resolve_device
        from torchmeans.data.distributed import Collective

        collective = Collective(world > 1)
        sizes = _sizes(km.labels_, n_clusters)
        labels = km.labels_
        if collective:  # the whole data's sizes and labels (in rank order)
            import numpy as np
            import torch

            sizes = collective.sum(torch.tensor(sizes)).tolist()
            labels = collective.gather(torch.as_tensor(np.asarray(labels))).numpy()
        summary = {
            "n_samples": int(sum(sizes)), "n_features": X.shape[1], "n_clusters": n_clusters,
            "metric": metric, "n_iter": int(km.n_iter_), "inertia": float(km.inertia_),
            "seconds": seconds,
            "device": str(resolve_device(device_name)),
            "cluster_size_min": min(sizes), "cluster_size_max": max(sizes),
        }
        if max_samples_per_cluster is not None and (
                summary["n_samples"] > n_clusters * max_samples_per_cluster):
            summary["fitted_on_rows"] = n_clusters * max_samples_per_cluster  # (labels: all)
        if rank != 0:  # rank 0 writes the files and the summary
            return
        if world > 1:
            summary["processes"] = world
        try:
            if out is not None:
                summary["model"] = str(km.save(out))
            if labels_path is not None:
                summary["labels"] = str(write_array(labels_path, _numpy(labels), "label"))
            if plot is not None:
                _plot_clusters(X, km, plot)
                summary["plot"] = plot
        except (OSError, ValueError) as error:
            raise fail(error) from error
        _report(click, summary, as_json)

    @cli.command()
    @click.argument("model", type=str)
    @data_argument
    @click.option("--out", required=True,
                  help="Write the labels, or the distances with --transform: .npy, .csv "
                       "(header 'label', or 'distance_0,distance_1,...') or .parquet.")
    @click.option("--transform", is_flag=True,
                  help="Write the (n_samples, n_clusters) distances instead of labels.")
    @columns_option
    @array_option
    @device_option
    @json_option
    def predict(model: str, data: str, out: str, transform: bool, columns: str | None,
                array: str | None, device: str, as_json: bool) -> None:
        """Label DATA with a saved MODEL (nearest center of each row)."""
        from torchmeans.io.data_files import ARRAY_OUTPUTS, write_array

        output(out, "--out", ARRAY_OUTPUTS, [("MODEL", model), ("DATA", data)])
        device_name = device_of(device)

        import torchmeans

        try:
            km = torchmeans.load(model)
        except (ValueError, OSError) as error:
            raise fail(error) from error
        X, _ = read(data, columns, array)
        expected = km.n_features_in_
        if X.shape[1] != expected:
            raise fail(ValueError(f"{data}: has {X.shape[1]} features, but {model} was fitted "
                                  f"on {expected}; pass data with {expected} columns "
                                  "(--columns)"))
        km.set_params(device=device_name)
        try:
            with _captured_output():
                result = km.transform(X) if transform else km.predict(X)
            write_array(out, _numpy(result), "distance" if transform else "label")
        except (ValueError, RuntimeError, OSError) as error:
            raise fail(error) from error
        summary = {"n_samples": len(X), "output": out,
                   "what": "distances" if transform else "labels"}
        _report(click, summary, as_json)

    @cli.command()
    @data_argument
    @click.option("--k", "k_range", default="2:10", show_default=True,
                  help="Range of k, START:STOP inclusive (or a comma-separated list).")
    @click.option("--step", type=click.IntRange(min=1), default=1, show_default=True)
    @click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default="euclidean",
                  show_default=True)
    @click.option("--n-init", default="auto", show_default=True)
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
    @click.option("--silhouette-sample", type=click.IntRange(min=2), default=10_000,
                  show_default=True, help="Score the silhouette on this many samples.")
    @columns_option
    @array_option
    @device_option
    @click.option("--plot", default=None,
                  help="Write the elbow and silhouette curves (.png, .svg or .pdf).")
    @json_option
    @quiet_option
    def sweep(data: str, k_range: str, step: int, metric: str, n_init: str, seed: int,
              silhouette_sample: int, columns: str | None, array: str | None, device: str,
              plot: str | None, as_json: bool, quiet: bool) -> None:
        """Fit each k in a range; report inertia, quality scores and the suggested k.

        Scores: silhouette (sampled), Calinski-Harabasz, Davies-Bouldin.
        """
        output(plot, "--plot", FIGURE_OUTPUTS, [("DATA", data)])
        if plot is not None:
            needs_matplotlib("--plot")
        ks = _parse_k_range(k_range, step, fail)
        n_init_value: int | str = n_init if n_init == "auto" else _positive_int(n_init, fail)
        device_name = device_of(device)

        from torchmeans.selection import sweep as run_sweep

        X, _ = read(data, columns, array)
        show = not quiet and _stderr_is_terminal()

        def progress(point: Any) -> None:
            if show:
                click.echo(f"k={point.n_clusters}: inertia {point.inertia:.6g}, silhouette "
                           f"{point.silhouette:.4f} ({point.seconds:.2f} s)", err=True)

        try:
            with _captured_output():
                result = run_sweep(X, ks, silhouette_sample=silhouette_sample,
                                   random_state=seed, callback=progress, n_init=n_init_value,
                                   device=device_name, metric=metric)
        except (ValueError, RuntimeError) as error:
            raise fail(error) from error
        if plot is not None:
            _use_agg()
            from torchmeans.plotting import plot_sweep

            _save_figure(plot_sweep([p.n_clusters for p in result.points],
                                    [p.inertia for p in result.points],
                                    silhouette=[p.silhouette for p in result.points],
                                    suggested=result.suggested), plot, fail)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=2))
            return
        click.echo(f"{'k':>4} {'inertia':>14} {'silhouette':>11} {'calinski':>12} "
                   f"{'davies':>8} {'n_iter':>6} {'seconds':>8}")
        for p in result.points:
            click.echo(f"{p.n_clusters:>4} {p.inertia:>14.6g} {p.silhouette:>11.4f} "
                       f"{p.calinski_harabasz:>12.4g} {p.davies_bouldin:>8.4f} {p.n_iter:>6} "
                       f"{p.seconds:>8.2f}")
        click.echo(f"suggested k (best silhouette): {result.suggested}; elbow: {result.elbow}")

    @cli.command()
    @click.argument("model", type=str)
    @json_option
    def info(model: str, as_json: bool) -> None:
        """Describe a saved MODEL: parameters, shape and training summary."""
        import torchmeans

        try:
            km = torchmeans.load(model)
        except (ValueError, OSError) as error:
            raise fail(error) from error
        params = km.get_params()
        if not isinstance(params["init"], str):
            params["init"] = "array"
        details = {"model": model, "n_clusters": km.cluster_centers_.shape[0],
                   "n_features": km.n_features_in_,
                   "dtype": str(km.cluster_centers_.dtype), "params": params,
                   "training": km.training_summary_}
        _report(click, details, as_json)

    @cli.command()
    @click.option("--out", default="blobs.png", show_default=True,
                  help="Where to write the picture (.png, .svg or .pdf).")
    @click.option("--device", default=None, help="Torch device (default: cuda if available).")
    @click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                  help="Seed of the init.")
    def demo(out: str, device: str | None, seed: int) -> None:
        """Cluster 300 points in 4 blobs (k=4) and draw them, centers as red X marks."""
        import dataclasses

        from torchmeans.io.data_files import replace_atomically

        output(out, "--out", FIGURE_OUTPUTS, [])
        needs_matplotlib("demo")
        device_name = device_of(device)
        from torchmeans.demo import run_demo

        summaries = []
        try:
            with _captured_output():
                replace_atomically(out, lambda scratch: summaries.append(
                    run_demo(scratch, device=device_name, random_state=seed)))
        except (ValueError, RuntimeError, OSError) as error:
            raise fail(error) from error
        click.echo(str(dataclasses.replace(summaries[0], image=Path(out))))

    @cli.command()
    @json_option
    def env(as_json: bool) -> None:
        """Versions and devices: what a bug report needs."""
        _report(click, environment(), as_json)

    return cli


def _show_failure(click: Any, error: Any) -> int:
    """Print a click exception as one ``Error:`` line on stderr; return its exit status.

    A usage error's message is joined onto one line and points at the command's
    ``--help`` (click would print the usage and a hint on lines of their own). With
    ``TORCHMEANS_DEBUG=1`` the traceback of the error's cause comes first.
    """
    if _debug() and error.__cause__ is not None:
        traceback.print_exception(error.__cause__, file=sys.stderr)
    if isinstance(error, click.UsageError):
        message = " ".join(line.strip() for line in error.format_message().splitlines()
                           if line.strip())
        if error.ctx is not None:
            message += f" (see '{error.ctx.command_path} --help')"
    else:
        message = _one_line(error.format_message())
    click.echo(f"Error: {message}", err=True)
    return error.exit_code


def _process_group() -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1): (rank, world size).

    NCCL with one GPU per process when CUDA is available, gloo otherwise.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def environment() -> dict[str, Any]:
    """Versions of torchmeans and its dependencies, and the devices torch sees."""
    import platform
    from importlib import metadata

    import torch

    from torchmeans.backends.native import kernel as _native

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    reason, info = _native.unavailable_reason(), _native.build_info()
    if reason is None:
        native_kernel = f"available: the {_native.variant()} variant"
        if _native.variant() != _native.cpu_variant():
            native_kernel += f" (TORCHMEANS_NATIVE_ISA; this CPU runs {_native.cpu_variant()})"
    else:
        native_kernel = f"unavailable, the torch path runs: {reason}"
    if info is None:
        native_build = "not built (a source tree: run `make native`)"
    elif info.get("variants"):
        native_build = f"{', '.join(info['variants'])} by {info.get('compiler')}"
    else:
        native_build = f"nothing built: {info.get('error')}"
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})"
                         for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return {
        "torchmeans": version("torchmeans"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: version(name) for name in ("torch", "numpy", "scikit-learn", "scipy",
                                            "triton", "safetensors", "matplotlib", "click",
                                            "pyarrow")},
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda or "none",
        "devices": devices,
        "native_kernel": native_kernel,
        "native_build": native_build,
    }


def _report(click: Any, details: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(details, indent=2, default=str))
        return
    for key, value in details.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        click.echo(f"{key}: {value}")


def _positive_int(text: str, fail: Any) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise fail(ValueError(f"--n-init must be 'auto' or an integer >= 1, got {text!r}"))
    return value


def _parse_k_range(text: str, step: int, fail: Any) -> list[int]:
    try:
        if ":" in text:
            start, stop = (int(part) for part in text.split(":"))
            ks = list(range(start, stop + 1, step))
        else:
            ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise fail(ValueError(f"--k must be START:STOP or a list like 2,4,8, got {text!r}")) \
            from None
    if not ks or min(ks) < 2:
        raise fail(ValueError(f"--k must give values >= 2, got {text!r}"))
    return ks


def _split_weight_column(X: Any, names: list | None, spec: str, *, last: bool, data: str,
                         fail: Any) -> tuple[Any, list | None, Any]:
    """Remove the weight column from ``X``: the last one (read after ``--columns``) or ``spec``."""
    import numpy as np

    width = X.shape[1]
    if last:
        column = width - 1
    elif names is not None and spec in names:
        column = names.index(spec)
    elif spec.lstrip("-").isdigit() and -width <= int(spec) < width:
        column = int(spec) % width
    else:
        raise fail(ValueError(f"{data}: --sample-weight {spec!r} is neither a file nor a column"))
    keep = [i for i in range(width) if i != column]
    weight = np.asarray(X[:, column], dtype=np.float64)
    return X[:, keep], None if names is None else [names[i] for i in keep], weight


def _use_agg() -> None:
    """Draw off-screen: the command line only writes files."""
    import matplotlib

    matplotlib.use("Agg")


def _plot_clusters(X: Any, km: Any, path: str) -> None:
    _use_agg()
    from torchmeans.plotting import plot_clusters

    _write_figure(plot_clusters(X, km.labels_, km.cluster_centers_,
                                title=f"k = {km.n_clusters}"), path)


def _save_figure(figure: Any, path: str, fail: Any) -> None:
    try:
        _write_figure(figure, path)
    except (OSError, ValueError) as error:
        raise fail(error) from error


def _write_figure(figure: Any, path: str) -> None:
    """Save ``figure`` atomically, in the format ``path``'s extension names."""
    from torchmeans.io.data_files import replace_atomically

    replace_atomically(path, lambda scratch: figure.savefig(
        scratch, format=Path(path).suffix.lower()[1:], dpi=120, bbox_inches="tight"))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``torchmeans`` console script and ``python -m torchmeans``.

    Exits with the command's status: 0, or 1, 2 or 130 after a one-line ``Error:`` on
    stderr (see the module docstring; ``TORCHMEANS_DEBUG=1`` shows tracebacks).
    """
    try:
        build_cli().main(args=argv, prog_name="torchmeans")
    finally:  # a process group joined under torchrun is left cleanly (gloo aborts otherwise)
        dist = sys.modules.get("torch.distributed")  # imported only if a command used torch
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
