"""The ``torchmeans`` command line (install the extra: ``pip install "torchmeans[cli]"``).

Commands: ``fit``, ``predict``, ``sweep``, ``info``, ``demo`` and ``env``. Each has
``--help``; a failure prints one line (``Error: ...``) and exits with status 1 (2 for a
usage error). Progress goes to stderr, only on a terminal and without ``--quiet``;
results go to stdout (``--json`` for machine-readable output).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["build_cli", "main"]


def _click() -> Any:
    try:
        import click
    except ImportError:  # pragma: no cover - exercised only without the extra
        sys.exit("torchmeans: the command line needs click: pip install 'torchmeans[cli]'")
    return click


def _device(name: str) -> str | None:
    return None if name == "auto" else name


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


class _Progress(logging.Handler):
    """Render the ``torchmeans`` logger's per-iteration messages as one updating line."""

    def __init__(self, stream: Any, n_samples: int) -> None:
        super().__init__(logging.INFO)
        self.stream, self.n_samples = stream, n_samples
        self.start = time.perf_counter()
        self.iterations = 0
        self.saved: tuple[int, bool] = (logging.NOTSET, True)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("iteration"):
            self.iterations += 1
            rate = self.iterations * self.n_samples / max(time.perf_counter() - self.start, 1e-9)
            self.stream.write(f"\r{message}, {rate / 1e6:.2f} M points/s\033[K")
            self.stream.flush()

    def close(self) -> None:
        if self.iterations:
            self.stream.write("\n")
        super().close()


def _progress(quiet: bool, n_samples: int) -> _Progress | None:
    """Return a progress handler on stderr (a terminal, not ``--quiet``), else None."""
    if quiet or not sys.stderr.isatty():
        return None
    handler = _Progress(sys.stderr, n_samples)
    logger = logging.getLogger("torchmeans")
    handler.saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def _stop_progress(handler: _Progress | None) -> None:
    """Remove the progress handler and give the logger its settings back."""
    if handler is not None:
        logger = logging.getLogger("torchmeans")
        logger.removeHandler(handler)
        logger.setLevel(handler.saved[0])
        logger.propagate = handler.saved[1]
        handler.close()


def build_cli() -> Any:
    """Build the click command group (click is imported only here)."""
    click = _click()

    def fail(error: Exception) -> Any:
        return click.ClickException(str(error).splitlines()[0] if str(error) else repr(error))

    def read(path: str, columns: str | None, array: str | None) -> tuple[Any, list | None]:
        from torchmeans._files import read_matrix

        try:
            return read_matrix(path, columns=columns, array=array)
        except (ValueError, OSError) as error:
            raise fail(error) from error

    data_argument = click.argument("data", type=str)
    columns_option = click.option("--columns", default=None,
                                  help="Comma-separated column names or 0-based indices to use.")
    array_option = click.option("--array", default=None, help="Array name inside an .npz file.")
    device_option = click.option("--device", default="auto", show_default=True,
                                 help="auto, cpu, cuda, cuda:1, mps, ...")
    json_option = click.option("--json", "as_json", is_flag=True,
                               help="Print machine-readable JSON instead of text.")
    quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress display.")

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    @click.option("--backend", type=click.Choice(["auto", "torch", "native", "triton"]),
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
    @click.option("--out", type=click.Path(dir_okay=False), default=None,
                  help="Write the model (.safetensors).")
    @click.option("--labels", "labels_path", type=click.Path(dir_okay=False), default=None,
                  help="Write the labels (.npy).")
    @click.option("--plot", type=click.Path(dir_okay=False), default=None,
                  help="Write a PNG of the clusters (PCA to 2-D when DATA has more features).")
    @json_option
    @quiet_option
    def fit(data: str, n_clusters: int, init: str, n_init: str, max_iter: int, tol: float,
            algorithm: str, metric: str, backend: str, precision: str, device: str, dtype: str,
            seed: int | None,
            sample_weight: str | None, columns: str | None, array: str | None,
            out: str | None, labels_path: str | None, plot: str | None, as_json: bool,
            quiet: bool) -> None:
        """Cluster DATA (.npy, .npz, .csv, .tsv, .parquet, or - for CSV on stdin)."""
        import numpy as np

        from torchmeans import KMeans

        rank, world = _process_group()
        weight_column = None
        if sample_weight is not None and not Path(sample_weight).is_file():
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
            from torchmeans._files import read_vector

            try:
                weight = read_vector(sample_weight, len(X))
            except (ValueError, OSError) as error:
                raise fail(error) from error
        if world > 1:  # under torchrun: this rank's contiguous rows
            first, last = rank * len(X) // world, (rank + 1) * len(X) // world
            X = X[first:last]
            weight = None if weight is None else weight[first:last]
        n_init_value: int | str = n_init if n_init == "auto" else _positive_int(n_init, fail)
        km = KMeans(n_clusters, init=init, n_init=n_init_value, max_iter=max_iter, tol=tol,
                    algorithm=algorithm, device=_device(device), random_state=seed,
                    metric=metric, backend=backend, precision=precision, verbose=0)
        handler = _progress(quiet, len(X))
        if handler is not None:
            km.set_params(verbose=1)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                km.fit(_dtype(X, dtype), sample_weight=weight)
        except (ValueError, RuntimeError, TypeError) as error:
            raise fail(error) from error
        finally:
            _stop_progress(handler)
        for warning in caught:  # one line each, on stderr
            click.echo(f"Warning: {str(warning.message).splitlines()[0]}", err=True)
        seconds = time.perf_counter() - start
        from torchmeans._distributed import Collective
        from torchmeans._validation import resolve_device

        collective = Collective(world > 1)
        sizes = _sizes(km.labels_, n_clusters)
        labels = km.labels_
        if collective:  # the whole data's sizes and labels (in rank order)
            import torch

            sizes = collective.sum(torch.tensor(sizes)).tolist()
            labels = collective.gather(torch.as_tensor(np.asarray(labels))).numpy()
        summary = {
            "n_samples": int(sum(sizes)), "n_features": X.shape[1], "n_clusters": n_clusters,
            "metric": metric, "n_iter": int(km.n_iter_), "inertia": float(km.inertia_),
            "seconds": seconds,
            "device": str(resolve_device(_device(device))),
            "cluster_size_min": min(sizes), "cluster_size_max": max(sizes),
        }
        if rank != 0:  # rank 0 writes the files and the summary
            return
        if world > 1:
            summary["processes"] = world
        try:
            if out is not None:
                summary["model"] = str(km.save(out))
            if labels_path is not None:
                np.save(labels_path, labels.cpu().numpy() if hasattr(labels, "cpu") else labels)
                summary["labels"] = labels_path
            if plot is not None:
                _plot_clusters(X, km, plot)
                summary["plot"] = plot
        except OSError as error:
            raise fail(error) from error
        _report(click, summary, as_json)

    @cli.command()
    @click.argument("model", type=str)
    @data_argument
    @click.option("--out", type=click.Path(dir_okay=False), required=True,
                  help="Write the labels (.npy), or the distances with --transform.")
    @click.option("--transform", is_flag=True,
                  help="Write the (n_samples, n_clusters) distances instead of labels.")
    @columns_option
    @array_option
    @device_option
    @json_option
    def predict(model: str, data: str, out: str, transform: bool, columns: str | None,
                array: str | None, device: str, as_json: bool) -> None:
        """Label DATA with a saved MODEL (nearest center of each row)."""
        import numpy as np

        import torchmeans

        try:
            km = torchmeans.load(model)
        except (ValueError, OSError) as error:
            raise fail(error) from error
        X, _ = read(data, columns, array)
        km.set_params(device=_device(device))
        try:
            result = km.transform(X) if transform else km.predict(X)
            np.save(out, result)
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
    @click.option("--plot", type=click.Path(dir_okay=False), default=None,
                  help="Write the elbow and silhouette curves (PNG).")
    @json_option
    @quiet_option
    def sweep(data: str, k_range: str, step: int, metric: str, n_init: str, seed: int,
              silhouette_sample: int, columns: str | None, array: str | None, device: str,
              plot: str | None, as_json: bool, quiet: bool) -> None:
        """Fit each k in a range; report inertia, quality scores and the suggested k.

        Scores: silhouette (sampled), Calinski-Harabasz, Davies-Bouldin.
        """
        from torchmeans.selection import sweep as run_sweep

        X, _ = read(data, columns, array)
        ks = _parse_k_range(k_range, step, fail)
        show = not quiet and sys.stderr.isatty()

        def progress(point: Any) -> None:
            if show:
                click.echo(f"k={point.n_clusters}: inertia {point.inertia:.6g}, silhouette "
                           f"{point.silhouette:.4f} ({point.seconds:.2f} s)", err=True)

        n_init_value: int | str = n_init if n_init == "auto" else _positive_int(n_init, fail)
        try:
            result = run_sweep(X, ks, silhouette_sample=silhouette_sample, random_state=seed,
                               callback=progress, n_init=n_init_value, device=_device(device),
                               metric=metric)
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
                  type=click.Path(dir_okay=False), help="Where to write the PNG.")
    @click.option("--device", default=None, help="Torch device (default: cuda if available).")
    @click.option("--seed", default=0, show_default=True, type=int, help="Seed of the init.")
    def demo(out: str, device: str | None, seed: int) -> None:
        """Cluster 300 points in 4 blobs (k=4) and draw them, centers as red X marks."""
        from torchmeans._demo import run_demo

        try:
            summary = run_demo(out, device=device, random_state=seed)
        except (ValueError, RuntimeError, OSError) as error:
            raise fail(error) from error
        click.echo(str(summary))

    @cli.command()
    @json_option
    def env(as_json: bool) -> None:
        """Versions and devices: what a bug report needs."""
        _report(click, environment(), as_json)

    return cli


def _process_group() -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1): (rank, world size).

    NCCL with one GPU per process when CUDA is available, gloo otherwise.
    """
    import os

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

    from torchmeans.ops import _native

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

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
        "native_kernel": _native.unavailable_reason() or "available",
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

    figure = plot_clusters(X, km.labels_, km.cluster_centers_, title=f"k = {km.n_clusters}")
    figure.savefig(path, dpi=120, bbox_inches="tight")


def _save_figure(figure: Any, path: str, fail: Any) -> None:
    try:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as error:
        raise fail(error) from error


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``torchmeans`` console script and ``python -m torchmeans``."""
    try:
        build_cli()(args=argv, prog_name="torchmeans")
    finally:  # a process group joined under torchrun is left cleanly (gloo aborts otherwise)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
