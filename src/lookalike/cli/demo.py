"""``lookalike demo``: the CLI adapter over :func:`lookalike.demo.run_demo`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .options import guard, progress_context, progress_hooks, say_wait

_OWN_FOLDER = "lookalike search YOUR_PHOTO.jpg YOUR_FOLDER --plot results.png"


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for the demo's photos, index and grid (default: demo/ in the user data dir).",
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many results to show for the demo's query photo.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guard
def command(out: str | None, k: int, as_json: bool) -> None:
    """Try lookalike on real photos, with nothing to bring and no model hub.

    Builds a folder of sample photos (from scikit-image, scikit-learn and matplotlib) and
    edited copies of them, indexes it with a trained EfficientNet-Lite0 from the package
    registry, searches with one photo and draws the results. A second run reuses it all.
    """
    from ..demo import default_demo_dir, run_demo
    from ..present import hits_table
    from ..present.grid import plot_grid

    root = Path(out).expanduser() if out else default_demo_dir()
    if not as_json:
        click.echo(f"lookalike demo: sample photos and edited copies in {root / 'photos'}")
    result = _run(run_demo, root, k, show_progress=not as_json and sys.stderr.isatty())
    plot = root / "results.png"
    plot_grid(str(result.query), result.hits, plot)
    if as_json:
        data = {
            "query": str(result.query),
            "results": [h.to_dict() for h in result.hits],
            "plot": str(plot),
            "db": str(result.db),
            "folder": str(result.folder),
            "images": result.images,
            "embedded": result.embedded,
            "seconds": round(result.report.seconds, 3),
            "model": result.model,
            "weights": result.weights,
        }
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    source = "the package registry" if result.weights.startswith("package:") else "timm's hub"
    done = (
        f"embedded {result.embedded} of {result.images} photos"
        if result.embedded
        else f"all {result.images} photos already indexed (nothing embedded)"
    )
    click.echo(
        f"{done} with {result.model} (weights from {source}) in {result.report.seconds:.1f} s"
    )
    click.echo(f"query: {result.query}")
    click.echo(hits_table(result.hits))
    click.echo(f"grid: {plot}")
    click.echo("")
    click.echo("Now the same on your own photos (the seed's ResNet50; its weights download once):")
    click.echo(f"  {_OWN_FOLDER}")
    click.echo("With no model hub, add: --model tf_efficientnet_lite0")
    click.echo(f"This demo again: lookalike demo{' --out ' + os.fspath(out) if out else ''}")


def _run(run_demo: Any, root: Path, k: int, *, show_progress: bool) -> Any:
    """Run the demo, with the index command's progress bar on a terminal."""
    bar = progress_context(show_progress)
    if bar is None:
        return run_demo(root, k=k, on_wait=say_wait)
    with bar:
        return run_demo(root, k=k, on_wait=say_wait, **progress_hooks(bar))
