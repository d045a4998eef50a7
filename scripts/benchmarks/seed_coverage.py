"""Coverage of the interval over seeds and false-positive rate of the paired tests, on synthetic scores.

    python scripts/benchmarks/seed_coverage.py [--draws 1000]

Prints, per number of seeds and per noise model, the share of draws whose 95 % interval holds the known mean
(two-level percentile bootstrap vs the t interval the report uses) and the share of draws in which two equal
entries are called different at p < 0.05 (two-level bootstrap tail vs the seed-aware t test). docs/statistics.md
quotes its numbers.
"""

from __future__ import annotations

import argparse

from sepbench.report.seeds.coverage import false_positive_rate, interval_coverage

MODELS = {  # σ of the seed effect, of the mixture difficulty, of the seed × mixture noise (MSE-like scale)
    "balanced": {"seed_sd": 0.002, "mix_sd": 0.01, "noise_sd": 0.003},
    "seed-dominated": {"seed_sd": 0.005, "mix_sd": 0.005, "noise_sd": 0.002},
    "no seed effect": {"seed_sd": 0.0, "mix_sd": 0.01, "noise_sd": 0.003},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--mixtures", type=int, default=200)
    args = parser.parse_args()
    print(f"{args.draws} draws, {args.mixtures} test mixtures, 1000 resamples; nominal: coverage 0.95, FPR 0.05")
    print("model            seeds  cover(bootstrap)  cover(t)  FPR(bootstrap)  FPR(t)")
    for name, model in MODELS.items():
        for k in (1, 2, 3, 5):
            cover = interval_coverage(k, args.draws, args.mixtures, 1000, seed=k, **model)
            fpr = false_positive_rate(k, args.draws, args.mixtures, 1000, 0.05, seed=k, **model)
            print(f"{name:16s} {k:5d}  {cover['bootstrap']:16.3f}  {cover.get('t', float('nan')):8.3f}  "
                  f"{fpr['bootstrap']:14.3f}  {fpr['t']:6.3f}", flush=True)


if __name__ == "__main__":
    main()
