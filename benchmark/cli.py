"""The ``bench`` command line: run a grid, report on runs, list methods."""

from __future__ import annotations

import sys

import click

from benchmark.errors import UserError


@click.group()
@click.version_option(package_name="sepbench")
def bench() -> None:
    """sepbench: benchmark image source separation methods."""


@bench.command()
@click.option("--grid", "grid_name", required=True, help="A grid file, or the name of a packaged grid.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default reports/<grid name>).")
@click.option("--executor", type=click.Choice(["ray", "local"]), default="local", show_default=True)
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join (HOST:PORT).")
@click.option("--data-dir", envvar="BENCH_DATA", type=click.Path(file_okay=False),
              help="Where MNIST IDX files are or go (default ~/.cache/sepbench).")
def run(grid_name: str, out: str | None, executor: str, address: str | None, data_dir: str | None) -> None:
    """Train and score every method × scenario × σ × seed of a grid; resumes an interrupted run."""
    from benchmark.grid import load_grid
    from benchmark.runner import run_grid

    grid = load_grid(grid_name)
    sys.exit(run_grid(grid, out=out, executor=executor, address=address, data_dir=data_dir))


@bench.command()
@click.argument("runs", nargs=-1, type=click.Path())
def report(runs: tuple[str, ...]) -> None:
    """Aggregate run directories into summary.csv and figures (default: every run under reports/)."""
    from pathlib import Path

    from benchmark.report import write_report

    if not runs:
        runs = tuple(str(p.parent) for p in sorted(Path("reports").glob("*/manifest.json")))
        if not runs:
            raise UserError("no run directory under reports/: run `bench run --grid quick` first, or name one")
    for run_dir in runs:
        path = write_report(run_dir)
        click.echo(f"wrote {path}")


@bench.command()
@click.argument("pattern", default="*")
def methods(pattern: str) -> None:
    """List the registered methods (optionally those matching a shell pattern, e.g. 'li*')."""
    from benchmark.registry import available_methods, method_origin

    for name, cls in available_methods(pattern).items():
        req = cls.requires
        needs = f"≥{req.min_observations} obs" + (", trains" if req.needs_training else "")
        params = ", ".join(f"{k}={v.default!r}" for k, v in cls.parameters.items()) or "-"
        click.echo(f"{name:<12} {method_origin(name):<10} {needs:<18} cpu={cls.resources.cpu:g} "
                   f"gpu={cls.resources.gpu:g}  {params}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        bench(standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code != 1 else 2)


if __name__ == "__main__":
    main()
