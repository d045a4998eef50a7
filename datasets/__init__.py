"""Source images and the forward model that turns them into mixtures."""
