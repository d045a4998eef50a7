"""Source images and the forward model that turns them into mixtures."""


def dataset_key(name: str, train_size: int, test_size: int) -> str:
    """Names the source images that test sets are drawn from: equal keys, equal test mixtures (and seeds)."""
    return f"{name}:{train_size}:{test_size}"
