"""Built-in separation methods; importing this package registers each of them."""

from methods import average, fcsae, ica  # noqa: F401
