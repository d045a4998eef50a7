"""``bench datasets``: every registered dataset with its shape, counts, labels, where its files come from and whether
they are here, then broken plugins."""

from __future__ import annotations

from pathlib import Path

from sepbench.datasets.registry import available_datasets, broken_datasets, dataset_origin


def _presence(dataset: object, data_dir: Path) -> str:
    try:
        return "yes" if dataset.present(data_dir) else "no"  # type: ignore[attr-defined]
    except Exception as exc:  # a plugin's own bug shows in its row, not as a traceback
        return f"unknown ({type(exc).__name__})"


def datasets_table(data_dir: Path) -> str:
    """One row per dataset (its default options), its source below it; then the broken plugins."""
    header = ("NAME", "ORIGIN", "SIZE", "CHANNELS", "TRAIN", "TEST", "LABELS", "HERE")
    rows: list[tuple[tuple[str, ...], str, str]] = []
    for name, cls in available_datasets().items():
        try:
            dataset = cls()
        except Exception as exc:  # a dataset whose defaults do not construct: listed with the reason
            rows.append(((name, dataset_origin(name), "?", "?", "?", "?", "?", "?"),
                         f"cannot be built with its default options: {type(exc).__name__}: {exc}", ""))
            continue
        height, width = dataset.image_size
        cells = (name, dataset_origin(name), f"{height}×{width}", str(dataset.channels), str(dataset.train_count),
                 str(dataset.test_count), "yes" if dataset.labelled else "no", _presence(dataset, data_dir))
        options = ", ".join(f"{k}: {v}" for k, v in cls.options_help.items())
        rows.append((cells, dataset.source() or "—", options))
    widths = [max([len(header[i])] + [len(r[0][i]) for r in rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for cells, source, options in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        lines.append(f"    files: {source}")
        if options:
            lines.append(f"    options: {options}")
    lines.append(f"(HERE: the files are in {data_dir} or shipped by an installed package, no download needed)")
    broken = broken_datasets()
    if broken:
        lines += ["", "broken dataset plugins (every other dataset works; fix or uninstall these):"]
        lines += [f"  {b.name}  ({b.origin}): {b.plugin}: {b.error}" for b in broken]
    return "\n".join(lines)
