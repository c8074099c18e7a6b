"""The ``torchmeans`` command line (install the extra: ``pip install "torchmeans[cli]"``)."""

from __future__ import annotations

import sys
from typing import Any


def _click() -> Any:
    try:
        import click
    except ImportError:  # pragma: no cover - exercised only without the extra
        sys.exit("torchmeans: the command line needs click: pip install 'torchmeans[cli]'")
    return click


def build_cli() -> Any:
    """Build the click command group (click is imported only here)."""
    click = _click()

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="torchmeans")
    def cli() -> None:
        """Exact k-means on PyTorch."""

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
            raise click.ClickException(str(error)) from error
        click.echo(str(summary))

    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``torchmeans`` console script and ``python -m torchmeans``."""
    build_cli()(args=argv, prog_name="torchmeans")
