"""Built-in separation methods; importing this package registers each of them."""

from sepbench.methods import (  # noqa: F401
    average,
    convsep,
    convsep_res,
    fcsae,
    ica,
    ligt,
    ligt_spatial,
    lsq,
    patchformer,
    unet,
)
