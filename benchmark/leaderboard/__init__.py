"""``bench leaderboard RUN...``: the per-track leaderboard from any run directories.

A **track** fixes the training budget in mixtures seen (``mixtures × epochs``, hardware independent) and the
precision; an entry belongs to the track whose budget it trained on exactly (:data:`TRACKS`), and entries that
train nothing (``average``, ``ica``, …) stand in every track as references (once each). Anything else is its own
``other`` track, labelled with its budget, so that no table mixes budgets. Per track and setting (scenario · σ,
with its dataset), one row per entry:

* the mean over training seeds, the interval over seeds (a t interval whose standard error has a seed term, which
  carries the seed spread, and a test-mixture term; one seed: the bootstrap over test mixtures, and the row says
  "1 seed"), the seed-to-seed standard deviation and n seeds (:func:`sepbench.report.seeds.seed_columns`);
* both conventions: PSNR as the mean of per-image values and as the PSNR of the mean MSE; SSIM with
  scikit-image's 7×7 window and with the Gaussian window of Wang et al. (``ssim_gauss``);
* the rank by mean MSE with its 95 % interval (ranks bootstrapped over seeds and shared test mixtures), within
  the track only;
* the best validation loss (the score the best epoch was chosen on, from held-out images) beside the test scores,
  "not converged" where the validation loss still fell by more than 1 % in the last epoch;
* parameters in that setting, measured fit core-seconds per seed, and the training FLOPs of the budget where they
  can be counted (:mod:`sepbench.leaderboard.flops`: matmuls, convolutions and attention of the training steps,
  counted on the ``meta`` device; hardware independent, unlike core-seconds).

Writes ``leaderboard.md``, ``leaderboard.html`` (self-contained, the report's styles) and ``leaderboard.csv``
(every column) and, per track with several seeds, ``tests-<track>.csv``: the seed-aware paired comparison with
Holm's correction. ``bench report`` shows the same tables as a section of its page (:func:`leaderboard_blocks`)
when a run has entries on a track's budget.
"""

from sepbench.leaderboard.page import EXPLAIN, leaderboard_blocks, markdown, page_blocks, write_leaderboard
from sepbench.leaderboard.tables import apart_by_test_set, tables_of, track_tables, training_flops
from sepbench.leaderboard.tracks import TRACKS, Track, cell_facts, track_name

__all__ = ["EXPLAIN", "TRACKS", "Track", "apart_by_test_set", "cell_facts", "leaderboard_blocks", "markdown",
           "page_blocks", "tables_of", "track_name", "track_tables", "training_flops", "write_leaderboard"]
