"""What a kept cell sends back: its fitted state as safetensors bytes, and the model card that says what made it.

Built in the process that ran the cell (a Ray worker, or the driver with the local executor); only the driver
writes it (:func:`sepbench.models.files.write_model`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from safetensors.torch import save as safetensors_bytes

from sepbench.api import Method
from sepbench.models.files import CARD_FORMAT

if TYPE_CHECKING:
    from sepbench.plan import Cell


@dataclass
class KeptModel:
    """A cell's fitted method, ready to be written: the weights file's bytes and the card (JSON-able)."""

    weights: bytes
    card: dict[str, Any]


def kept_model(cell: Cell, method: Method, meta: dict[str, Any], rows: pd.DataFrame) -> KeptModel:
    """The fitted ``method`` of a finished ``cell`` as a :class:`KeptModel` (``meta``: the cell's record so far)."""
    state = method.save_state()
    weights = safetensors_bytes({name: tensor.detach().cpu().contiguous() for name, tensor in state.items()},
                                metadata={"format": "sepbench-kept-model", "cell": cell.id})
    task = asdict(cell.task)
    card = {
        "format": CARD_FORMAT,
        "cell": cell.id,
        "entry": {"method": cell.method, "label": cell.label, "params": dict(cell.params),
                  "train": asdict(cell.budget) if cell.budget else None},
        "plugins": list(cell.plugins),
        "task": {**task, "weights": [list(row) for row in task["weights"]], "source_shape": list(task["source_shape"])},
        "scenario": cell.scenario.name,
        "sigma": cell.sigma,
        "seed": cell.seed,
        "dataset": cell.dataset.to_dict(),
        "data": cell.data,
        "test": {"mixtures": cell.test_mixtures, "pairs": cell.test_pairs},
        "code": meta.get("provenance"),  # the method's code fingerprint, sepbench, torch, device kind
        "origin": meta.get("origin"),
        "device": meta.get("device"),
        "precision": method.precision_,
        "n_parameters": meta.get("n_parameters"),
        "history": meta.get("history", []),
        "scores": {"mse": float(rows["mse"].mean()), "psnr": float(rows["psnr"].mean()),
                   "ssim": float(rows["ssim"].mean()), "test_mixtures": cell.test_mixtures},
        "weights": {"file": f"{cell.id}.safetensors", "sha256": hashlib.sha256(weights).hexdigest(),
                    "tensors": {name: list(tensor.shape) for name, tensor in state.items()}},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return KeptModel(weights, card)
