"""Kept models on disk: ``<run>/models/<cell id>.safetensors`` and its card ``<cell id>.json``.

The driver writes both atomically and records their SHA-256 in the cell's record (``files.model``,
``files.card``); the card holds the weights' SHA-256 too. A file that does not match is refused, never loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepbench.errors import UserError
from sepbench.files import atomic_write
from sepbench.integrity import sha256_bytes

if TYPE_CHECKING:  # the store imports this module: torch and safetensors load only where a model is read
    import torch

    from sepbench.models.card import KeptModel

CARD_FORMAT = 1

MODELS_DIR = "models"


def model_paths(root: str | Path, cell_id: str) -> tuple[Path, Path]:
    """The weights file and the model card of cell ``cell_id`` in run directory ``root``."""
    folder = Path(root) / MODELS_DIR
    return folder / f"{cell_id}.safetensors", folder / f"{cell_id}.json"


def write_model(root: str | Path, cell_id: str, kept: KeptModel | None) -> dict[str, str]:
    """Write a cell's kept model (weights, then card); returns the checksums for the cell's record. Without one,
    a model an earlier run of this cell left is removed: it came from a training whose results are replaced."""
    weights_path, card_path = model_paths(root, cell_id)
    if kept is None:
        for path in (weights_path, card_path):
            path.unlink(missing_ok=True)
        return {}
    atomic_write(weights_path, kept.weights)
    card = json.dumps(kept.card, indent=2, default=str).encode()
    atomic_write(card_path, card)
    return {"model": sha256_bytes(kept.weights), "card": sha256_bytes(card)}


def model_problem(root: str | Path, cell_id: str, record: dict[str, Any]) -> str | None:
    """Why finished cell ``cell_id`` (its ``record``) has no usable kept model; None if it has one."""
    sums = record.get("files") or {}
    if "model" not in sums or "card" not in sums:
        return "no kept model"
    for path, key in zip(model_paths(root, cell_id), ("model", "card"), strict=True):
        if not path.is_file():
            return f"its kept model's {path.name} is missing"
        if sha256_bytes(path.read_bytes()) != sums[key]:
            return f"its kept model's {path.name} does not match its checksum"
    return None


def read_kept(root: str | Path, cell_id: str, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The card and the tensors of a cell's kept model, each checked against its checksum; a damaged file, or
    weights that are not the ones the card names, raise one :class:`UserError` line (refused, nothing loaded)."""
    weights_path, card_path = model_paths(root, cell_id)
    sums = record.get("files") or {}
    if "model" not in sums:
        raise UserError(f"{root}: cell {cell_id} has no kept model")
    for path in (weights_path, card_path):
        if not path.is_file():
            raise UserError(f"{path}: missing: refused (rerun the cell with --keep-models)")
    card_bytes = card_path.read_bytes()
    if sha256_bytes(card_bytes) != sums.get("card"):
        raise UserError(f"{card_path}: does not match the checksum its cell record holds (damaged or edited): refused")
    try:
        card = json.loads(card_bytes)
        expected = card["weights"]["sha256"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{card_path}: not a model card: refused") from None
    if card.get("format") != CARD_FORMAT or card.get("cell") != cell_id:
        raise UserError(f"{card_path}: a model card of format {card.get('format')} for cell {card.get('cell')}, "
                        f"expected format {CARD_FORMAT} for cell {cell_id}: refused")
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    weights = weights_path.read_bytes()
    if sha256_bytes(weights) != expected or expected != sums["model"]:
        raise UserError(f"{weights_path}: does not match its model card (sha256 {sha256_bytes(weights)[:12]}…, "
                        f"card {str(expected)[:12]}…): damaged or replaced: refused")
    try:
        state = load_safetensors(weights)
    except (SafetensorError, ValueError) as exc:
        raise UserError(f"{weights_path}: not a safetensors file ({exc}): refused") from None
    shapes = {name: list(tensor.shape) for name, tensor in state.items()}
    if shapes != card["weights"].get("tensors"):
        raise UserError(f"{weights_path}: its tensors are not the ones its model card lists: refused")
    return card, state
