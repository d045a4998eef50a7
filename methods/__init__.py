"""Built-in separation methods; importing this package registers each of them."""

from sepbench.methods import average, convsep, fcsae, ica, ligt  # noqa: F401
