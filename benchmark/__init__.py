"""sepbench: a benchmark suite for image source separation."""
