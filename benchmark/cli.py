"""The ``bench`` command line: run a grid, report on runs, list methods."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sepbench.errors import UserError


@click.group()
@click.version_option(package_name="sepbench")
def bench() -> None:
    """sepbench: benchmark image source separation methods."""


@bench.command()
@click.option("--grid", "grid_name", required=True, help="A grid file, or the name of a packaged grid.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default reports/<grid name>).")
@click.option("--executor", type=click.Choice(["ray", "local"]), default="ray", show_default=True)
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join (HOST:PORT).")
@click.option("--data-dir", envvar="BENCH_DATA", type=click.Path(file_okay=False),
              help="Where MNIST IDX files are or go (default ~/.cache/sepbench).")
@click.option("--gpu-share", type=float, metavar="SHARE",
              help="Share of a GPU each GPU cell takes, e.g. 0.25: four cells per GPU (default: the grid's "
                   "`resources`, else the method's).")
@click.option("--keep-stale", is_flag=True,
              help="Keep finished cells whose method code, versions or device changed (the report marks them).")
@click.option("--cell-timeout", type=float, metavar="SECONDS",
              help="End a cell that runs longer and record it as failed (a grid entry's own `timeout` wins).")
@click.option("--keep-models", is_flag=True,
              help="Store each cell's fitted method (models/, for `bench separate`); finished cells without one rerun.")
@click.option("--jobs", type=int, default=1, show_default=True, metavar="N",
              help="With --executor local: cells side by side, each in a child process (CPU threads shared "
                   "equally; several GPUs handed out in turn).")
@click.option("--only", "only", multiple=True, metavar="KEY=VALUE[,VALUE...]",
              help="Run only the cells that match (KEY: method, scenario, sigma or seed; repeat for several keys); the "
                   "others wait for a later run, their checkpoints kept. E.g. --only scenario=paper --only seed=0,1.")
def run(grid_name: str, out: str | None, executor: str, address: str | None, data_dir: str | None,
        gpu_share: float | None, keep_stale: bool, cell_timeout: float | None, keep_models: bool, jobs: int,
        only: tuple[str, ...]) -> None:
    """Train and score every method × scenario × σ × seed of a grid; resumes an interrupted run.

    A finished cell is reused only if its files are intact and its method's code, sepbench, torch and the
    device kind are unchanged; damaged cells are moved to cells/damaged/ and recomputed.
    """
    from sepbench.grid import check_gpu_share, check_timeout, load_grid
    from sepbench.runner import run_grid

    if gpu_share is not None:
        try:
            gpu_share = check_gpu_share(gpu_share)
        except ValueError as exc:
            raise UserError(f"--gpu-share: {exc}") from None
        if gpu_share == 0:
            raise UserError("--gpu-share: expected a share > 0 (a method entry's `resources: {gpu: 0}` keeps "
                            "its cells off GPUs)")
    if cell_timeout is not None:
        try:
            cell_timeout = check_timeout(cell_timeout)
        except ValueError as exc:
            raise UserError(f"--cell-timeout: {exc}") from None
    if jobs < 1:
        raise UserError(f"--jobs: expected a whole number ≥ 1, got {jobs}")
    if jobs > 1 and executor != "local":
        raise UserError("--jobs is for --executor local (Ray puts as many cells side by side as resources allow)")
    grid = load_grid(grid_name)
    sys.exit(run_grid(grid, out=out, executor=executor, address=address, data_dir=data_dir, gpu_share=gpu_share,
                      keep_stale=keep_stale, cell_timeout=cell_timeout, keep_models=keep_models, jobs=jobs,
                      only=only))


@bench.command()
@click.argument("runs", nargs=-1, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False),
              help="Where to write (default: the run directory; for several runs <first run>/comparison).")
@click.option("--data-dir", envvar="BENCH_DATA", type=click.Path(file_okay=False),
              help="Where MNIST and the digit classifier are (default ~/.cache/sepbench).")
@click.option("--protocol", type=click.Choice(["sepbench", "paper"]), default="sepbench", show_default=True,
              help="paper: the paper's scoring protocol beside sepbench's (paper-protocol.md/.csv), for runs "
                   "scored on the paper's test pairs.")
def report(runs: tuple[str, ...], out: str | None, data_dir: str | None, protocol: str) -> None:
    """Write report.html, report.md, summary.csv and figures for a run; several runs: one comparison page.

    Without RUNS: a report for every run under reports/ whose cells changed since its last report, each in
    its own directory (a named run is always reported).
    """
    from pathlib import Path

    if protocol == "paper":
        from sepbench.report.paper import write_paper_report

        if not runs:
            raise UserError("--protocol paper needs the run directories to report on")
        for run_dir in runs:
            path = write_paper_report(run_dir, out)
            click.echo(path.read_text())
            click.echo(f"wrote {path}")
        return

    from sepbench.report import is_current, write_comparison, write_report

    if len(runs) > 1:
        click.echo(f"wrote {write_comparison(runs, out, data_dir, warn=lambda line: click.echo(line, err=True))}")
        return
    if not runs:
        if out:
            raise UserError("--out needs the run directories to report on")
        found = [p.parent for p in sorted(Path("reports").glob("*/manifest.json"))]
        if not found:
            raise UserError("no run directory under reports/: run `bench run --grid quick` first, or name one")
        stale = []
        for run_dir in found:
            if is_current(run_dir):
                click.echo(f"up to date: {run_dir} (no cell changed since its report; `bench report {run_dir}` "
                           "writes it again)")
            else:
                stale.append(str(run_dir))
        runs = tuple(stale)
    for run_dir in runs:  # damaged and failed cells are named on stderr (damaged ones left out); exit status 0
        click.echo(f"wrote {write_report(run_dir, out, data_dir, warn=lambda line: click.echo(line, err=True))}")


@bench.command(short_help="Rerun a sample of a run's cells and compare each metric with the committed one.")
@click.argument("run_dir", type=click.Path())
@click.option("--cells", "count", type=int, help="How many finished cells to rerun, at random (default 3).")
@click.option("--cell", "named", multiple=True, metavar="ID", help="A cell id to rerun (repeatable; not with --cells).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random choice of cells.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--data-dir", envvar="BENCH_DATA", type=click.Path(file_okay=False),
              help="Where MNIST and the digit classifier are (default ~/.cache/sepbench).")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=VALUE",
              help="Override a metric's tolerance for every cell (mse: relative, e.g. 0.02; psnr: dB; ssim, "
                   "recognised: absolute); repeatable.")
def verify(run_dir: str, count: int | None, named: tuple[str, ...], seed: int, executor: str,
           data_dir: str | None, tolerances: tuple[str, ...]) -> None:
    """Rerun finished cells of RUN_DIR from their own configurations in a temporary directory (RUN_DIR is only
    read); per cell and metric the committed and rerun values, their difference and the tolerance. Exit 0 when
    all are within tolerance, 1 when any is not (or a cell's files are damaged)."""
    from sepbench.verify import parse_tolerances, verify_run

    overrides = parse_tolerances(tolerances)
    sys.exit(verify_run(run_dir, count=count, named=named, seed=seed, executor=executor, data_dir=data_dir,
                        overrides=overrides))


@bench.command(short_help="List methods (origin, needs, parameters) and broken plugins.")
@click.argument("patterns", nargs=-1)
@click.option("--verbose", "-v", is_flag=True, help="Also show each method's summary and parameter help.")
def methods(patterns: tuple[str, ...], verbose: bool) -> None:
    """List the registered methods (optionally those matching any of the shell patterns, e.g. 'li*' unet), and
    broken plugins."""
    from sepbench.registry import available_methods, broken_plugins, methods_table

    patterns = patterns or ("*",)
    unmatched = [p for p in patterns if not available_methods(p) and not broken_plugins(p)]
    if unmatched:
        known = ", ".join(available_methods())
        raise UserError(f"no method matches {', '.join(map(repr, unmatched))} (known: {known})")
    click.echo(methods_table(patterns, verbose))


@bench.command(short_help="List datasets (size, channels, counts, labels, files and whether they are here).")
@click.option("--data-dir", envvar="BENCH_DATA", type=click.Path(file_okay=False),
              help="Where dataset files are or go (default ~/.cache/sepbench).")
def datasets(data_dir: str | None) -> None:
    """List the registered datasets: image size, channels, train/test counts, labels, where the files come from,
    whether they are here (no download needed); plugins' origins, and broken dataset plugins."""
    from pathlib import Path

    from sepbench.datasets.listing import datasets_table
    from sepbench.datasets.registry import default_data_dir

    click.echo(datasets_table(Path(data_dir).expanduser() if data_dir else default_data_dir()))


@bench.command("check-method", short_help="Hold a method to the method contract (✓/✗ per check).")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter for the method (YAML value), repeatable.")
@click.option("--device", default="cpu", show_default=True, help="Device to fit and separate on.")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
              help="A module to import first, as a grid's `plugins:` are (repeatable).")
def check_method_command(name: str, params: tuple[str, ...], device: str, plugins: tuple[str, ...]) -> None:
    """Run the method contract on NAME: every check with ✓/✗; exit 0 if all pass, 1 if any fails."""
    import yaml

    from sepbench.contract import check_method, contract_params, format_report
    from sepbench.registry import get_method, import_plugins, method_origin

    import_plugins(plugins, where="--plugin")
    cls = get_method(name)  # unknown or broken: one line, exit 2
    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param {item!r}: expected KEY=VALUE")
        values[key] = yaml.safe_load(value)
    contract_params(cls, values)  # a bad parameter is bad input: one line, exit 2
    results = check_method(name, params=values, device=device)
    click.echo(format_report(f"method contract: {name} ({method_origin(name)})", results))
    sys.exit(0 if all(r.passed for r in results) else 1)


@bench.command("new-method", short_help="Write a ready plugin package for a new method.")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(), help="Where to write the package (default ./bench-NAME).")
def new_method_command(name: str, directory: str | None) -> None:
    """Write a plugin package for a new method NAME: installable, registered, passing the contract as written."""
    from sepbench.scaffold import names, new_method

    written = new_method(name, directory)
    root = written[0].parent
    click.echo(f"wrote {len(written)} files for method {name!r} in {root}/:")
    for path in written:
        click.echo(f"  {path.relative_to(root)}")
    click.echo(f"next: edit {root}/{names(name)['package']}/method.py, then\n"
               f"  cd {root} && pip install -e .[test] && bench check-method {name} && pytest\n"
               f"  bench run --grid grid.yaml --executor local")


@bench.command("new-dataset", short_help="Write a ready plugin package for a new dataset.")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(), help="Where to write the package (default ./bench-NAME-data).")
def new_dataset_command(name: str, directory: str | None) -> None:
    """Write a plugin package for a new dataset NAME: installable, registered, with example files and a grid."""
    from sepbench.scaffold_dataset import names, new_dataset

    written = new_dataset(name, directory)
    root = written[0].parent
    click.echo(f"wrote {len(written)} files for dataset {name!r} in {root}/:")
    for path in written:
        click.echo(f"  {path.relative_to(root)}")
    click.echo(f"next: edit {root}/{names(name)['package']}/data.py, then\n"
               f"  cd {root} && pip install -e .[test] && python -m {names(name)['package']}.data DATA_DIR && pytest\n"
               f"  bench datasets && bench run --grid grid.yaml --executor local")


@bench.command(short_help="Separate observations with a run's kept model.")
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the estimates.")
@click.option("--entry", help="The grid entry (label) whose model to use (default: the best kept one by mean MSE).")
@click.option("--scenario", help="The scenario of the model (needed when the run kept several).")
@click.option("--sigma", type=float, help="The σ of the model (needed when the run kept several).")
@click.option("--seed", type=int, help="The training seed of the model (default: the lowest kept).")
@click.option("--scale", help="Images only: the observation value of one pixel unit, e.g. 2/255.")
@click.option("--device", default="cpu", show_default=True)
def separate(run_dir: str, inputs: tuple[str, ...], out: str, entry: str | None, scenario: str | None,
             sigma: float | None, seed: int | None, scale: str | None, device: str) -> None:
    """Apply a kept model to observations: float32 .npy arrays on the observation's scale, or PNG/JPEG/TIFF images
    with --scale. Writes one PNG per estimated source, the estimates as .npy and a side-by-side figure."""
    from sepbench.models.commands import separate_inputs

    for line in separate_inputs(run_dir, inputs, out, entry=entry, scenario=scenario, sigma=sigma, seed=seed,
                                scale=scale, device=device):
        click.echo(line)


@bench.command(short_help="Make an observation from your own source images with a run's scenario.")
@click.argument("run_dir", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The observation (.npy; a .png beside).")
@click.option("--scenario", help="The run's scenario (its forward model; needed when the run has several).")
@click.option("--sigma", type=float, required=True, help="σ of the added Gaussian noise.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise.")
def mix(run_dir: str, images: tuple[str, ...], out: str, scenario: str | None, sigma: float, seed: int) -> None:
    """Superimpose, pool and add noise to IMAGES (one per source, grey, the dataset's size) as the run's scenario
    does: the observation as .npy (exact float32) and a PNG preview, ready for `bench separate`."""
    from sepbench.models.commands import mix_images

    for line in mix_images(run_dir, images, out, scenario=scenario, sigma=sigma, seed=seed):
        click.echo(line)


@bench.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default="leaderboard", show_default=True,
              help="Where to write leaderboard.md, leaderboard.csv and the per-track tests.")
def leaderboard(runs: tuple[str, ...], out: str) -> None:
    """The per-track leaderboard of run directories: equal budgets per track, seeds aggregated (interval over
    seeds, seed std), both PSNR and SSIM conventions, rank intervals, validation beside test."""
    from sepbench.leaderboard import write_leaderboard

    files = [run for run in runs if Path(run).is_file()]  # `bench leaderboard reports/leaderboard/*` names pages too
    for name in files:
        click.echo(f"skipped {name}: a file, not a run directory", err=True)
    page = write_leaderboard([run for run in runs if run not in files], out)
    click.echo(page.read_text())
    click.echo(f"wrote {page}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2; SIGTERM is handled like Ctrl-C
    (exit status 143 instead of 130); a file that cannot be written or read is one line too (exit status 3 when
    the disk is full, else 2)."""
    from sepbench.files import describe_os_error, is_disk_full
    from sepbench.signals import EXIT_TERMINATED, install_sigterm_handler, is_termination

    install_sigterm_handler()
    try:
        bench(standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort as exc:
        terminated = is_termination(exc)
        click.echo("terminated" if terminated else "interrupted", err=True)
        sys.exit(EXIT_TERMINATED if terminated else 130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code != 1 else 2)
    except OSError as exc:  # a path the user gave that cannot be written (permissions, a file in the way), a full disk
        click.echo(f"error: {describe_os_error(exc, 'use')}", err=True)
        sys.exit(3 if is_disk_full(exc) else 2)


if __name__ == "__main__":
    main()
