"""A scenario's noise model and blur in the grid file: read, checked, and written back.

    scenarios:
      faint: {weights: [[1, 1, 1]], downsample: 2, noise: {model: poisson-gaussian, photons: 100}}
      soft:  {weights: [[1, 1]], downsample: 1, blur: {psf: gaussian, width: 1.0}}
      sd:    {weights: [[1, 1]], downsample: 1, blur: {psf: random, size: 5}}

``noise: gaussian`` (the default: σ from the grid's ``noise`` list) or ``{model: poisson-gaussian, photons: P}``
(Poisson counts at P photons per unit intensity, then the Gaussian σ); ``blur`` is absent (none), a known
Gaussian PSF of standard deviation ``width`` pixels, or a blind random ``size``×``size`` kernel per source and
mixture (odd size). Defaults are left out of the written form, so older grids keep their cell ids.
"""

from __future__ import annotations

import math
from typing import Any

from sepbench.errors import short

NOISE_MODELS = ("gaussian", "poisson-gaussian")
BLUR_PSFS = ("gaussian", "random")
MAX_PHOTONS = 1e9
MAX_BLUR_WIDTH = 20.0  # pixels: a PSF wider than that leaves nothing of a 28×28 image
MAX_BLUR_SIZE = 31


def _number(check: Any, key: str, value: Any, low: float, high: float, what: str) -> float:
    value = check.typed(key, value, float)
    if not (math.isfinite(value) and low < value <= high):
        raise check.fail(key, f"expected {what}, got {short(value)}")
    return value


def parse_forward(check: Any, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The Scenario fields of ``spec``'s ``noise`` and ``blur`` keys (``check``: the grid's checker)."""
    out: dict[str, Any] = {}
    noise = spec.get("noise", "gaussian")
    if isinstance(noise, str):
        noise = {"model": noise}
    noise = check.mapping(f"{key}.noise", noise, {"model", "photons"})
    model = check.typed(f"{key}.noise.model", noise.get("model", "gaussian"), str)
    if model not in NOISE_MODELS:
        raise check.fail(f"{key}.noise.model", f"expected one of {', '.join(NOISE_MODELS)}, got {short(model)}")
    if model == "poisson-gaussian":
        if "photons" not in noise:
            raise check.fail(f"{key}.noise", "poisson-gaussian needs 'photons' (photons per unit intensity)")
        out["noise_model"] = model
        out["photons"] = _number(check, f"{key}.noise.photons", noise["photons"], 0, MAX_PHOTONS,
                                 f"a photon count per unit intensity > 0 and ≤ {MAX_PHOTONS:g}")
    elif "photons" in noise:
        raise check.fail(f"{key}.noise.photons", "only the poisson-gaussian model counts photons")
    if "blur" not in spec:
        return out
    blur = check.mapping(f"{key}.blur", spec["blur"], {"psf", "width", "size"})
    psf = check.typed(f"{key}.blur.psf", blur.get("psf"), str)
    if psf not in BLUR_PSFS:
        raise check.fail(f"{key}.blur.psf", f"expected one of {', '.join(BLUR_PSFS)}, got {short(psf)}")
    if psf == "gaussian":
        if "width" not in blur or "size" in blur:
            raise check.fail(f"{key}.blur", "a gaussian psf takes 'width' (its standard deviation in pixels) only")
        out.update(blur="gaussian", blur_width=_number(check, f"{key}.blur.width", blur["width"], 0,
                                                       MAX_BLUR_WIDTH, f"a width > 0 and ≤ {MAX_BLUR_WIDTH:g} pixels"))
    else:
        if "size" not in blur or "width" in blur:
            raise check.fail(f"{key}.blur", "a random psf takes 'size' (the kernel's side in pixels) only")
        size = check.typed(f"{key}.blur.size", blur["size"], int)
        if not (1 <= size <= MAX_BLUR_SIZE and size % 2):
            raise check.fail(f"{key}.blur.size", f"expected an odd kernel side from 1 to {MAX_BLUR_SIZE}, got {size}")
        out.update(blur="random", blur_size=size)
    return out


def forward_to_dict(scenario: Any) -> dict[str, Any]:
    """The ``noise`` and ``blur`` keys of a Scenario in the grid file's form; nothing for the defaults."""
    out: dict[str, Any] = {}
    if scenario.noise_model != "gaussian":
        out["noise"] = {"model": scenario.noise_model, "photons": scenario.photons}
    if scenario.blur == "gaussian":
        out["blur"] = {"psf": "gaussian", "width": scenario.blur_width}
    elif scenario.blur == "random":
        out["blur"] = {"psf": "random", "size": scenario.blur_size}
    return out
