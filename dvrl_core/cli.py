"""The ``dvrl`` command line.

``dvrl value TRAIN --target COL [--valid VALID | --valid-fraction F] [--test TEST]
[--id-column COL] [--method NAME] [--predictor NAME] [--iterations N] [--seed S] [--ensemble K]
[--device D] [--inject-noise F] [--out OUT.csv|OUT.parquet]`` values every training row and
writes one row per training row, in input order, with the columns ``row``, ``value``, ``rank``
(1 = lowest value) and ``label`` (plus ``noise_injected`` with ``--inject-noise``). Without
``--out`` the table goes to standard output. Progress and the summary go to standard error.
Errors print one line and exit 2.
``--method`` picks DVRL (the default) or a baseline to compare it with (``knn_shapley``,
``data_oob``, ``leave_one_out``: see :mod:`dvrl_core.baselines`); the baselines run with their
defaults and the seed, and DVRL's options (``--predictor``, ``--metric``, ``--rollouts``) are
refused with them.

``--ensemble K`` runs DVRL K times with independent seeds derived from ``--seed``, one after
another, and writes the members' mean with a ``std_error`` column; the summary adds the rank
stability (the members' mean pairwise Spearman correlation) and each member's trust verdict
(:mod:`dvrl_core.ensemble`).

``dvrl demo`` values a generated table with planted label noise and prints what it found.

This contract is stable: other tools call it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .ensemble import MAX_MEMBERS
from .errors import DVRLError
from .methods import METHODS

EXIT_ERROR = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dvrl", description="Data valuation with DVRL: a value for every training row."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    value = commands.add_parser("value", help="value the rows of a training table")
    value.add_argument("train", help="training table (CSV or Parquet)")
    value.add_argument("--target", required=True, help="the label column")
    source = value.add_mutually_exclusive_group()
    source.add_argument("--valid", help="validation table from the target task (CSV or Parquet)")
    source.add_argument("--valid-fraction", type=float,
                        help="hold out this fraction of the training rows as validation")
    value.add_argument("--test", help="test table, for the removal curves in the summary")
    value.add_argument("--id-column", help="column whose values name the rows in the output")
    value.add_argument("--task", default="auto", choices=["auto", "classification", "regression"])
    value.add_argument("--method", default="dvrl", choices=sorted(METHODS),
                       help="valuation method (default: dvrl); the others are baselines")
    value.add_argument("--predictor", help="predictor trained inside DVRL: "
                       "logistic_regression (default; linear_regression for regression), "
                       "naive_bayes, lightgbm, mlp, or auto (the one that fits the validation "
                       "rows best)")
    value.add_argument("--metric", help="reward metric (auc, accuracy, log_loss; mae, mse, rmspe)")
    value.add_argument("--iterations", type=int, default=2000)
    value.add_argument("--rollouts", type=int, help="rollouts per iteration")
    value.add_argument("--seed", type=int, default=0)
    value.add_argument("--ensemble", type=int, default=1, metavar="K",
                       help="run DVRL K times with seeds derived from --seed and report their "
                       f"mean, per-row standard error and rank stability (1 to {MAX_MEMBERS}; "
                       "default 1)")
    value.add_argument("--device", default="auto", help="auto, cpu or cuda")
    value.add_argument("--inject-noise", type=float, metavar="F",
                       help="self-check: flip this fraction of training labels and report how "
                       "many of them rank lowest")
    value.add_argument("--out", help="output file (.csv or .parquet); default: standard output")
    value.add_argument("--quiet", action="store_true", help="no progress and no summary")

    demo = commands.add_parser("demo", help="value a generated table with planted label noise")
    demo.add_argument("--rows", type=int, default=1000)
    demo.add_argument("--iterations", type=int, default=500)
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from .runtime import tune_allocator

    tune_allocator()
    try:
        if args.command == "demo":
            return _demo(args)
        return _value(args)
    except DVRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


class _ProgressPrinter:
    """A tqdm bar on a terminal; a line every 10% otherwise (logs stay short)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.next_report = 0.1
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="it", file=sys.stderr, desc="valuing", leave=False)

    def __call__(self, progress) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.total = progress.total
            self.bar.update(progress.iteration - self.bar.n)
            self.bar.set_postfix(reward=f"{progress.reward:+.4f}", refresh=False)
        elif progress.iteration >= self.next_report * progress.total:
            print(f"iteration {progress.iteration}/{progress.total}  reward "
                  f"{progress.reward:+.4f}  {progress.elapsed_s:.1f}s", file=sys.stderr)
            self.next_report += 0.1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _value(args: argparse.Namespace) -> int:
    from .data import prepare
    from .errors import ConfigError
    from .evaluation import detection_auroc, found_fraction
    from .io import read_table, write_table
    from .noise import with_label_noise

    if args.valid is None and args.valid_fraction is None:
        raise ConfigError("give --valid TABLE or --valid-fraction F")
    if args.iterations < 1:
        raise ConfigError("--iterations must be at least 1")
    if not 1 <= args.ensemble <= MAX_MEMBERS:
        raise ConfigError(f"--ensemble must be between 1 and {MAX_MEMBERS}")
    if args.ensemble > 1 and args.method != "dvrl":
        raise ConfigError(f"--ensemble: an ensemble of DVRL runs; not of --method {args.method}")
    train = read_table(args.train)
    valid = read_table(args.valid) if args.valid else None
    test = read_table(args.test) if args.test else None
    data = prepare(train, args.target, valid, valid_fraction=args.valid_fraction, test=test,
                   id_column=args.id_column, task=args.task, random_state=args.seed)
    del train, valid, test  # the encoded arrays are all that is needed from here on
    corrupted = None
    if args.inject_noise is not None:
        data, corrupted = with_label_noise(data, args.inject_noise, args.seed)

    progress = _ProgressPrinter(not args.quiet)
    try:
        if args.ensemble > 1:
            from .ensemble import fit_ensemble, member_seeds

            result = fit_ensemble(data, member_seeds(args.seed, args.ensemble),
                                  lambda seed: _make_valuer(args, seed), on_progress=progress)
        else:
            result = _make_valuer(args, args.seed).fit(data, on_progress=progress)
    finally:
        progress.close()

    table = result.to_dataframe()
    if corrupted is not None:
        table["noise_injected"] = np.isin(np.arange(len(table)), corrupted)
    if args.out:
        write_table(table, args.out)
    else:
        table.to_csv(sys.stdout, index=False)
    if not args.quiet:
        _summary(result, table, corrupted, args.seed, data, args.out, found_fraction,
                 detection_auroc)
    return 0


def _make_valuer(args: argparse.Namespace, seed: int):
    """DVRL with the command line's options, or a baseline with its defaults and the seed."""
    from .errors import ConfigError
    from .methods import make_method

    dvrl_options = {name: getattr(args, name) for name in ("predictor", "metric", "rollouts")
                    if getattr(args, name) is not None}
    params = {"random_state": seed, "device": args.device}
    if args.method == "dvrl":
        return make_method("dvrl", iterations=args.iterations, **params, **dvrl_options)
    if dvrl_options:
        options = ", ".join(f"--{name}" for name in dvrl_options)
        raise ConfigError(f"{options}: options of --method dvrl, not of {args.method}")
    return make_method(args.method, **params)


def _summary(result, table, corrupted, seed, data, out, found_fraction,
             detection_auroc) -> None:
    err = sys.stderr
    timing = result.timings
    method = result.params.get("method", "dvrl")
    if method == "dvrl":
        print(f"\nvalued {len(table)} rows in {timing['total_s']:.1f}s "
              f"({timing['iterations_per_s']:.0f} iterations/s on {result.device}); "
              f"predictor {result.params['predictor']}, reward {result.params['metric']}",
              file=err)
        choice = result.diagnostics.get("predictor_choice")
        if choice:
            scores = ", ".join(f"{name} {score:.4f}" for name, score in choice["scores"].items())
            print(f"predictor chosen by auto: validation {choice['metric']} (higher is better) "
                  f"{scores}", file=err)
    else:
        print(f"\nvalued {len(table)} rows with {method} in {timing['total_s']:.1f}s on "
              f"{result.device}; model {result.params.get('predictor')}, metric "
              f"{result.params.get('metric')}", file=err)
    shown = ["row", "value", "rank", "label"]
    print("lowest-valued rows (review these first):", file=err)
    print(table.sort_values("rank").head(5)[shown].to_string(index=False), file=err)
    print("highest-valued rows:", file=err)
    print(table.sort_values("rank", ascending=False).head(5)[shown].to_string(index=False),
          file=err)
    ensemble = result.diagnostics.get("ensemble")
    if ensemble:
        _ensemble_summary(ensemble, err)
    trust = result.diagnostics.get("trust")
    if trust:
        returned = {"prior": "the prior (learning made the planted flips harder to find)",
                    "mixed": "the learned values in {dvrl} members, the prior in {prior}"}.get(
            trust["returned"], "the learned values").format(**trust.get("returned_counts", {}))
        rows = trust.get("check_rows", 0) + trust.get("planted", {}).get("rows", 0)
        where = f" on {rows} held-out validation rows" if rows else ""
        print(f"trust check{where}: {trust['verdict']}; returned {returned}", file=err)
    if corrupted is not None and len(corrupted):
        from .controls import marginal_control

        control = marginal_control(data, random_state=seed)
        found = ", ".join(f"{f:.0%}: {found_fraction(result.values, corrupted, f):.2f}"
                          for f in (0.1, 0.2, 0.3))
        print(f"injected noise: {len(corrupted)} labels flipped; found among the lowest {found}",
              file=err)
        print(f"detection AUROC {detection_auroc(result.values, corrupted):.3f} "
              f"(the official marginal alone: found@20% "
              f"{found_fraction(control, corrupted, 0.2):.2f}, AUROC "
              f"{detection_auroc(control, corrupted):.3f}; random: found@20% 0.20)", file=err)
    if out:
        print(f"values written to {out}", file=err)


def _ensemble_summary(ensemble: dict, err) -> None:
    def shown(value: float | None, digits: int) -> str:
        return "undefined" if value is None else f"{value:.{digits}f}"

    stability = ensemble["rank_stability"]
    errors = ensemble["std_error"]
    print(f"ensemble of {ensemble['members']} runs (seeds {ensemble['seeds']}): rank stability "
          f"{shown(stability['mean_spearman'], 3)} (mean pairwise Spearman; lowest pair "
          f"{shown(stability['min_spearman'], 3)}); per-row standard error median "
          f"{shown(errors['median'], 4)}, max {shown(errors['max'], 4)}", file=err)


def _demo(args: argparse.Namespace) -> int:
    from .datasets import make_table

    table = make_table(args.rows + 400, n_features=10, random_state=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        train_path = Path(folder) / "train.csv"
        valid_path = Path(folder) / "valid.csv"
        table.iloc[: args.rows].to_csv(train_path, index=False)
        table.iloc[args.rows:].to_csv(valid_path, index=False)
        out = Path(os.getcwd()) / "dvrl-demo-values.csv"
        print(f"demo: {args.rows} generated training rows, 400 validation rows, 20% of the "
              "training labels flipped on purpose", file=sys.stderr)
        return _value(_build_parser().parse_args([
            "value", str(train_path), "--target", "label", "--valid", str(valid_path),
            "--inject-noise", "0.2", "--iterations", str(args.iterations), "--seed",
            str(args.seed), "--out", str(out),
        ]))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
