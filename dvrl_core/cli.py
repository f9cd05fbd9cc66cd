"""The ``dvrl`` command line.

``dvrl value TRAIN --target COL [--valid VALID | --valid-fraction F] [--test TEST] [--threads N]
[--id-column COL] [--features COL ...] [--method NAME] [--predictor NAME] [--iterations N]
[--tolerance T] [--seed S] [--ensemble K] [--device D] [--inject-noise F]
[--out OUT.csv|OUT.parquet]`` values every training row and writes one row per training row,
in input order, with the columns ``row``, ``value``, ``rank`` (1 = lowest value) and
``label`` (plus ``noise_injected`` with ``--inject-noise``). Without ``--out`` (or with
``--out -``) the table goes to standard output. Progress and the summary go to standard error.
Errors print one line and exit 2.
``--method`` picks DVRL (the default) or a baseline to compare it with (``knn_shapley``,
``data_oob``, ``leave_one_out``: see :mod:`dvrl_core.baselines`); the baselines run with their
defaults and the seed, and DVRL's options (``--predictor``, ``--metric``, ``--rollouts``,
``--tolerance``) are refused with them. DVRL stops before ``--iterations`` once its values have
converged (``--tolerance``, 0 to run every iteration); the summary says how many it used.

``--ensemble K`` runs DVRL K times with independent seeds derived from ``--seed``, one after
another, and writes the members' mean with a ``std_error`` column; the summary adds the rank
stability (the members' mean pairwise Spearman correlation) and each member's trust verdict
(:mod:`dvrl_core.ensemble`).

Training tables over 256 MB (``STREAM_BYTES``) are read in two streaming passes into a
memory-mapped float32 matrix (:func:`dvrl_core.stream.prepare_file`), so that a table of ten
million rows needs little more memory than its encoded matrix.

``dvrl demo`` values a generated table with planted label noise and prints what it found.

This contract is stable: other tools call it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .ensemble import MAX_MEMBERS
from .errors import ConfigError, DVRLError
from .methods import METHODS

EXIT_ERROR = 2
MAX_SEED = 2**31 - 1  # as a job's spec takes it: `dvrl remote value` passes the same seed
# training tables bigger than this are read in two streaming passes (dvrl_core.stream) into a
# memory-mapped matrix rather than whole into memory
STREAM_BYTES = 256 << 20


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # read_table says what is wrong with it


def add_value_arguments(value: argparse.ArgumentParser) -> None:
    """The arguments of ``dvrl value``; ``dvrl remote value`` (dvrl_client.cli) takes the same."""
    value.add_argument("train", help="training table (CSV or Parquet)")
    value.add_argument("--target", required=True, help="the label column")
    source = value.add_mutually_exclusive_group()
    source.add_argument("--valid", help="validation table from the target task (CSV or Parquet)")
    source.add_argument("--valid-fraction", type=float,
                        help="hold out this fraction of the training rows as validation")
    value.add_argument("--test", help="test table: the summary adds the removal test on it "
                       "(LightGBM's score without the lowest-, highest-valued and random 10/20/30%%"
                       " of the rows)")
    value.add_argument("--id-column", help="column whose values name the rows in the output")
    value.add_argument("--features", nargs="+", metavar="COL",
                       help="the feature columns (default: every column but the target and the "
                       "id column)")
    value.add_argument("--task", default="auto", choices=["auto", "classification", "regression"])
    value.add_argument("--method", default="dvrl", choices=sorted(METHODS),
                       help="valuation method (default: dvrl); the others are baselines")
    value.add_argument("--predictor", help="predictor trained inside DVRL: "
                       "logistic_regression (default; linear_regression for regression), "
                       "naive_bayes, bernoulli_naive_bayes, lightgbm, mlp, or auto (the one "
                       "that fits the validation rows best)")
    value.add_argument("--metric", help="reward metric (auc, accuracy, log_loss; mae, mse, rmspe)")
    value.add_argument("--iterations", type=int,
                       help="the most DVRL iterations (default 2000, DVRL's); the run stops "
                       "earlier once its values have converged (--tolerance)")
    value.add_argument("--tolerance", type=float, help="stop once the values' ranking changes "
                       "by less than this (1 - Spearman) between checks 50 iterations apart "
                       "(default 0.001), or once the trust check's guard has decided to return "
                       "the prior; 0 runs every iteration")
    value.add_argument("--rollouts", type=int, help="rollouts per iteration")
    value.add_argument("--shift", choices=["auto", "off"],
                       help="auto (default): where the validation rows' features come from "
                       "another distribution than the training rows', weight the prior's "
                       "values toward the rows that resemble them (the summary says whether "
                       "it did); off: never")
    value.add_argument("--seed", type=int, default=0, help=f"0 to {MAX_SEED} (default 0)")
    value.add_argument("--ensemble", type=int, default=1, metavar="K",
                       help="run DVRL K times with seeds derived from --seed and report their "
                       f"mean, per-row standard error and rank stability (1 to {MAX_MEMBERS}; "
                       "default 1)")
    value.add_argument("--device", default="auto", help="auto, cpu or cuda")
    value.add_argument("--inject-noise", type=float, metavar="F",
                       help="self-check: flip this fraction of training labels (regression: "
                       "move their targets far, see dvrl_core.noise) and report how many of "
                       "them rank lowest")
    value.add_argument("--out", help="output file (.csv or .parquet); default, or -: standard "
                       "output")
    value.add_argument("--quiet", action="store_true", help="no progress and no summary")
    value.add_argument("--threads", type=int, help="threads for torch, OpenMP, BLAS and LightGBM "
                       "(default: the CPUs this process may use: its affinity and cgroup quota)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dvrl", description="Data valuation with DVRL: a value for every training row."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    value = commands.add_parser("value", help="value the rows of a training table")
    add_value_arguments(value)

    demo = commands.add_parser("demo", help="value a generated table with planted label noise")
    demo.add_argument("--rows", type=int, default=1000)
    demo.add_argument("--iterations", type=int, default=500)
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from .runtime import quiet_known_warnings, tune_allocator
    from .threads import apply_thread_budget

    tune_allocator()
    quiet_known_warnings()
    try:
        apply_thread_budget(getattr(args, "threads", None))
        if args.command == "demo":
            return _demo(args)
        return _value(args)
    except DVRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dvrl value ... | head`
        return reader_left()


def values_to_stdout(table) -> None:
    """The values as CSV on standard output; one that cannot be written (a full disk,
    ``> /dev/full``) is a ConfigError naming it, not a traceback. A reader that left early
    (``| head``) is the caller's BrokenPipeError."""
    try:
        table.to_csv(sys.stdout, index=False)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot write the values to standard output ({exc.strerror or exc}); "
                          "give --out FILE") from None


def reader_left() -> int:
    """The exit status of a command whose standard output's reader left early (``... | head``):
    not an error; standard output now goes nowhere so that the interpreter's last flush stays
    quiet."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class ProgressPrinter:
    """A tqdm bar on a terminal; a line every 10% otherwise (logs stay short). Called with
    anything that has ``iteration``, ``total``, ``reward`` and ``elapsed_s``: the library's
    progress, or a remote job's (``dvrl remote value``). A baseline's steps (trees, rows) carry
    no reward (NaN, or None from the service): they are counted as steps."""

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
        rewarded = progress.reward is not None and math.isfinite(progress.reward)
        if self.bar is not None:
            self.bar.total = progress.total
            self.bar.update(progress.iteration - self.bar.n)
            if rewarded:
                self.bar.set_postfix(reward=f"{progress.reward:+.4f}", refresh=False)
        elif progress.iteration >= self.next_report * progress.total:
            done = f"{progress.iteration}/{progress.total}"
            print(f"iteration {done}  reward {progress.reward:+.4f}  {progress.elapsed_s:.1f}s"
                  if rewarded else f"step {done}  {progress.elapsed_s:.1f}s", file=sys.stderr)
            self.next_report += 0.1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def check_value_arguments(args: argparse.Namespace) -> None:
    """The checks of ``dvrl value``'s arguments made before any table is read."""
    if args.valid is None and args.valid_fraction is None:
        raise ConfigError("give --valid TABLE or --valid-fraction F")
    if args.iterations is not None and args.iterations < 1:
        raise ConfigError("--iterations must be at least 1")
    for name in ("predictor", "metric", "out"):
        if getattr(args, name, None) is not None and not getattr(args, name).strip():
            raise ConfigError(f"--{name} is empty; name one or leave it out")
    if getattr(args, "tolerance", None) is not None and not 0 <= args.tolerance < 1:
        raise ConfigError("--tolerance must be in [0, 1): 0 runs every iteration")
    if not 1 <= args.ensemble <= MAX_MEMBERS:
        raise ConfigError(f"--ensemble must be between 1 and {MAX_MEMBERS}")
    if args.ensemble > 1 and args.method != "dvrl":
        raise ConfigError(f"--ensemble: an ensemble of DVRL runs; not of --method {args.method}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be between 0 and {MAX_SEED}")
    if args.out == "-":  # the usual name of standard output (a file named "-" was written)
        args.out = None
    if args.out:  # refused before the run, not after it
        from .io import check_writable

        check_writable(args.out)
        for name in ("train", "valid", "test"):
            if _same_file(args.out, getattr(args, name, None)):
                raise ConfigError(f"--out {args.out} is the {name} table: writing the values "
                                  "there would overwrite it; name another file")


def _same_file(a: str, b: str | None) -> bool:
    """Whether paths ``a`` and ``b`` name one file (``b`` None or a fraction: no)."""
    if not isinstance(b, str):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def dvrl_options(args: argparse.Namespace) -> dict[str, object]:
    """The options given that belong to DVRL alone; a ConfigError names them when another
    method was asked for (they would otherwise be ignored)."""
    options = {name: getattr(args, name) for name in ("predictor", "metric", "iterations",
                                                      "rollouts", "tolerance", "shift")
               if getattr(args, name) is not None}
    if args.method != "dvrl" and options:
        names = ", ".join(f"--{name}" for name in options)
        raise ConfigError(f"{names}: options of --method dvrl, not of {args.method}")
    return options


def _value(args: argparse.Namespace) -> int:
    from .data import prepare
    from .io import read_table, write_table
    from .noise import with_label_noise
    from .predictors.base import resolve_device

    check_value_arguments(args)
    resolve_device(args.device)  # an unknown device, or CUDA without a GPU: said before the work
    valid = read_table(args.valid) if args.valid else None
    test = read_table(args.test) if args.test else None
    if _file_size(args.train) > STREAM_BYTES:  # two passes over the file, never all of it
        from .stream import prepare_file

        data = prepare_file(args.train, args.target, valid, valid_fraction=args.valid_fraction,
                            test=test, id_column=args.id_column, feature_columns=args.features,
                            task=args.task, random_state=args.seed)
    else:
        ids = [args.id_column] if args.id_column else []  # as written: 007 is not 7
        data = prepare(read_table(args.train, text_columns=ids), args.target, valid,
                       valid_fraction=args.valid_fraction, test=test, id_column=args.id_column,
                       feature_columns=args.features, task=args.task, random_state=args.seed)
    del valid, test  # the encoded arrays are all that is needed from here on
    if data.test is not None:  # the removal test's AUC: said before the run, not after it
        from .evaluation import scoring_rows
        from .metrics import DEFAULT_METRIC

        scoring_rows(data, DEFAULT_METRIC[data.task],
                     remedy="give a --test table with rows of both classes")
    corrupted = None
    if args.inject_noise is not None:
        data, corrupted = with_label_noise(data, args.inject_noise, args.seed)

    progress = ProgressPrinter(not args.quiet)
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
        values_to_stdout(table)
    if not args.quiet:
        print_summary(_summary_of(result, data, corrupted, args.seed), table, args.out)
    return 0


def _make_valuer(args: argparse.Namespace, seed: int):
    """DVRL with the command line's options, or a baseline with its defaults and the seed."""
    from .methods import make_method

    options = dvrl_options(args)
    params = {"random_state": seed, "device": args.device}
    if args.method == "dvrl":
        return make_method("dvrl", **params, **options)
    return make_method(args.method, **params)


def _summary_of(result, data, corrupted, random_state) -> dict[str, Any]:
    """The run's figures, in the shape of a service job's ``summary`` (which
    :func:`print_summary` also prints for ``dvrl remote value``)."""
    from .checks import checks_of
    from .controls import marginal_control
    from .evaluation import detection_auroc, found_fraction

    summary: dict[str, Any] = {
        "method": result.params.get("method", "dvrl"), "device": result.device,
        "timings": result.timings, "predictor": result.params.get("predictor"),
        "metric": result.params.get("metric"), "task": data.task,
    } | checks_of(result, data)
    if result.diagnostics.get("trust"):
        summary["trust"] = result.diagnostics["trust"]
    if result.diagnostics.get("ensemble"):
        summary["ensemble"] = result.diagnostics["ensemble"]
    # as a job's summary.diagnostics has them
    shared = {name: result.diagnostics[name]
              for name in ("predictor_choice", "convergence", "shift")
              if result.diagnostics.get(name)}
    if shared:
        summary["diagnostics"] = shared
    if data.test is not None:  # --test: the paper's removal test on the user's test rows
        summary["removal"] = _removal_summary(data, result.values, random_state)
    if corrupted is not None and len(corrupted):
        control = marginal_control(data, random_state=random_state)
        summary["label_noise"] = {
            "flipped": len(corrupted),
            **{f"found_at_{p}": found_fraction(result.values, corrupted, p / 100)
               for p in (10, 20, 30)},
            "auroc": detection_auroc(result.values, corrupted),
            "marginal_control": {"found_at_20": found_fraction(control, corrupted, 0.2),
                                 "auroc": detection_auroc(control, corrupted)},
        }
    return summary


REMOVED_FRACTIONS = (0.0, 0.1, 0.2, 0.3)


def _removal_summary(data, values: np.ndarray, random_state: int) -> dict[str, Any]:
    """LightGBM's test score after removing the lowest-, the highest-valued and random 10, 20
    and 30% of the training rows (a seeded sample of them on big tables)."""
    from .evaluation import evaluation_sample, removal_curves

    sampled, sampled_values = evaluation_sample(data, values, random_state)
    frame = removal_curves(sampled, sampled_values, fractions=np.array(REMOVED_FRACTIONS),
                           random_state=random_state)
    return {"metric": frame.attrs["metric"], "model": "lightgbm", "rows": len(sampled_values),
            **{column: frame[column].round(4).tolist()
               for column in ("removed", "remove_lowest", "remove_highest", "random")}}


def _removal_line(removal: dict[str, Any]) -> str:
    def scores(column: str) -> str:
        return "/".join(f"{score:.3f}" for score in removal[column][1:])

    removed = "/".join(f"{fraction:.0%}" for fraction in removal["removed"][1:])
    return (f"removal test on the test table ({removal['model']}, {removal['metric']}, "
            f"{removal['rows']} training rows): all rows {removal['remove_lowest'][0]:.3f}; "
            f"without the lowest-valued {removed} {scores('remove_lowest')}, the highest-valued "
            f"{scores('remove_highest')}, random rows {scores('random')}")


def _convergence_line(convergence: dict[str, Any]) -> str:
    used, most = convergence["iterations_used"], convergence["iterations_max"]
    if convergence.get("decided"):
        return f"stopped after {used} of {most} iterations: {convergence['decided']}"
    if convergence["converged"]:
        return (f"stopped after {used} of {most} iterations: the values' ranking had converged "
                f"(change {convergence['rank_change']:.2g} < tolerance "
                f"{convergence['tolerance']:g}, checked every {convergence['check_every']})")
    return f"ran {used} of {most} iterations"


def _rate(per_s: float) -> str:
    """Iterations a second, in two significant figures below 10 (0.24, not 0)."""
    return f"{per_s:.0f}" if per_s >= 10 else f"{per_s:.2g}"


def print_summary(summary: dict[str, Any], table, out: str | None) -> None:
    """The summary on standard error: timing, the lowest- and highest-valued rows, the trust
    check and, with injected noise, how much of it ranks lowest."""
    err = sys.stderr
    timing = summary["timings"]
    method = summary.get("method", "dvrl")
    if method == "dvrl":
        rate = timing["iterations_per_s"]  # none where the loop never ran (the prior returned)
        print(f"\nvalued {len(table)} rows in {timing['total_s']:.1f}s "
              f"({f'{_rate(rate)} iterations/s on ' if rate > 0 else 'on '}{summary['device']}, "
              f"{_threads(summary)}); "
              f"predictor {summary['predictor']}, reward {summary['metric']}", file=err)
        convergence = summary.get("diagnostics", {}).get("convergence")
        if convergence:
            print(_convergence_line(convergence), file=err)
        choice = summary.get("diagnostics", {}).get("predictor_choice")
        if choice:
            scores = ", ".join(f"{name} {score:.4f}" for name, score in choice["scores"].items())
            print(f"predictor chosen by auto: validation {choice['metric']} (higher is better) "
                  f"{scores}", file=err)
    else:
        print(f"\nvalued {len(table)} rows with {method} in {timing['total_s']:.1f}s on "
              f"{summary['device']} ({_threads(summary)}); model {summary.get('predictor')}, "
              f"metric {summary.get('metric')}", file=err)
    shown = ["row", "value", "rank", "label"]
    print("lowest-valued rows (review these first):", file=err)
    print(table.sort_values("rank").head(5)[shown].to_string(index=False), file=err)
    print("highest-valued rows:", file=err)
    print(table.sort_values("rank", ascending=False).head(5)[shown].to_string(index=False),
          file=err)
    ensemble = summary.get("ensemble")
    if ensemble:
        _ensemble_summary(ensemble, err)
    trust = summary.get("trust")
    if trust:
        returned = {"prior": "the prior (the learned values did not find the planted errors "
                             "clearly better)",
                    "mixed": "the learned values in {dvrl} members, the prior in {prior}"}.get(
            trust["returned"], "the learned values").format(**trust.get("returned_counts", {}))
        rows = trust.get("check_rows", 0) + trust.get("planted", {}).get("rows", 0)
        where = f" on {rows} held-out validation rows" if rows else ""
        print(f"trust check{where}: {trust['verdict']}; returned {returned}", file=err)
    shift = (summary.get("diagnostics") or {}).get("shift")
    if shift and shift.get("applied"):
        members = f" in {shift['members_applied']} of {shift['members']} members" \
            if "members" in shift else ""
        print(f"covariate shift: a classifier tells the validation rows from the training rows "
              f"(AUROC {shift['auroc']:.2f}); the prior's values were weighted toward the rows "
              f"that resemble them{members} (effective share {shift['effective_share']:.2f}; "
              "--shift off leaves them unweighted)", file=err)
    if summary.get("removal"):
        print(_removal_line(summary["removal"]), file=err)
    noise = summary.get("label_noise")
    if noise and noise["flipped"]:
        found = ", ".join(f"{p}%: {noise[f'found_at_{p}']:.2f}" for p in (10, 20, 30))
        changed = "targets moved" if summary.get("task") == "regression" else "labels flipped"
        print(f"injected noise: {noise['flipped']} {changed}; found among the lowest "
              f"{found}", file=err)
        control = noise["marginal_control"]
        print(f"detection AUROC {noise['auroc']:.3f} (the official marginal alone: found@20% "
              f"{control['found_at_20']:.2f}, AUROC {control['auroc']:.3f}; random: found@20% "
              "0.20)", file=err)
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=err)
    if out:
        print(f"values written to {out}", file=err)


def _threads(summary: dict[str, Any]) -> str:
    """The threads the run used: a job's summary says (``dvrl remote value``), else this
    process's budget."""
    count = summary.get("threads")
    if count is None:
        from .threads import threads_in_use

        count = threads_in_use()
    return f"{count} thread" + ("s" if count != 1 else "")


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
