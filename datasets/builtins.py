"""The built-in datasets: importing this module registers each (one import line per dataset module).

:func:`sepbench.datasets.registry.load_datasets` imports it; a new built-in dataset is a module with a
``@register_dataset`` class, and one line here.
"""

# ruff: noqa: F401
import sepbench.datasets.cifar10
import sepbench.datasets.idx_sets  # fashion-mnist, kmnist
import sepbench.datasets.mnist
import sepbench.datasets.natural_patches
