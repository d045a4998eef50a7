"""What a reader must know before trusting a run's numbers: damaged, stale and out-of-grid cells, mixed producers."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sepbench.report.load import RunData

PRODUCERS = (("sepbench", "sepbench"), ("torch", "torch"), ("data", "source images"), ("device", "device"))


def _cell(cell: dict[str, Any]) -> str:
    sigma = cell.get("sigma")
    sigma = f"{sigma:g}" if isinstance(sigma, int | float) else "?"
    return f"{cell.get('label')} · {cell.get('scenario')} · σ={sigma} · seed {cell.get('seed')} (cell {cell['id']})"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{value if value is not None else 'not recorded'} ({n} cells)" for value, n in counter.items())


def mixed_producers(run: RunData) -> list[str]:
    """One line per thing that differs between the done cells of a run: a method's code, versions, data, device."""
    lines = []
    code: dict[str, Counter] = defaultdict(Counter)
    for record in run.meta.values():
        origin = record.get("provenance") or {}
        label = record.get("config", {}).get("label", "?")
        code[label][(origin.get("code"), origin.get("method_version"))] += 1
    for label, counter in code.items():
        if len(counter) > 1:
            shown = Counter({f"code {c or '?'} version {v or '?'}" if c else None: n for (c, v), n in counter.items()})
            lines.append(f"{label}: cells from different method code: {_counts(shown)}")
    for key, name in PRODUCERS:
        if key == "data":  # each dataset has its own images: mixed only within one dataset
            by_dataset: dict[str, Counter] = defaultdict(Counter)
            for cell_id, record in run.meta.items():
                by_dataset[run.dataset(cell_id)][(record.get("provenance") or {}).get(key)] += 1
            lines += [f"{name} of {dataset}: {_counts(counter)}" if len(by_dataset) > 1 else f"{name}: "
                      f"{_counts(counter)}" for dataset, counter in by_dataset.items() if len(counter) > 1]
            continue
        counter = Counter((r.get("provenance") or {}).get(key) for r in run.meta.values())
        if len(counter) > 1:
            lines.append(f"{name}: {_counts(counter)}")
    return lines


def caveats(run: RunData, prefix: str = "") -> tuple[list[str], list[str], list[str]]:
    """(problems: damaged cells; warnings: stale cells kept, mixed producers; notes: cells not in the grid)."""
    problems = [f"{prefix}damaged: {_cell(c)}: {c['error']} (set aside and recomputed by the next `bench run`)"
                for c in run.damaged]
    manifest = run.manifest
    by_id = {c["id"]: c for c in manifest["cells"]}
    stale = manifest.get("stale_kept") or {}
    warnings = [f"{prefix}stale (kept with --keep-stale): {_cell(by_id.get(i, {'id': i}))}: {'; '.join(why)}"
                for i, why in stale.items() if i in run.meta]
    warnings += [f"{prefix}mixed: {line}" for line in mixed_producers(run)]
    notes = [f"{prefix}{_cell(c)}" for c in manifest.get("not_in_grid") or []]
    return problems, warnings, notes
