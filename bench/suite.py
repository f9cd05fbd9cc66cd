"""The quality suite: the DVRL paper's noisy-label protocol on many real tables, ours against the
simple controls on the same splits (``python bench/quality.py --suite``).

    python bench/quality.py --suite [--sizes 1000 5000] [--seeds 3] [--tables adult letter]
                                    [--regression] [--method dvrl] [--jobs 2] [--iterations N]

Each cell (table, training rows, seed) draws train / 400 validation / test rows, flips 20% of
the training labels (``--regression``: moves 20% of the training targets to the other half of
the moved rows' targets), and values the training rows with ``--method`` (its defaults,
nothing tuned per table) and with every control of ``dvrl_core.controls`` plus the marginal
control (for a regression target the controls' linear model is a linear regression and their
score minus the absolute error). Printed per table: found@20 (flipped rows among the
lowest-valued 20%) and AUROC, means over seeds; then
the mean over tables, the worst table, and ours minus the best control per table; last, how many
jobs gave each trust verdict, and how many "worse than the simple control" calls were false
(our values found more corrupted rows than the marginal control).

Cells run in ``--jobs`` processes with the CPUs divided between them (two torch processes with
default threads on two cores run five times slower each). Finished cells are kept in
``bench/out/suite.jsonl`` (keyed by method, its settings, table, size, seed and a digest of
dvrl_core's source), so an interrupted suite resumes and a code change runs again.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dvrl_core.threads import apply_thread_budget, split_budget

OUT = Path(__file__).resolve().parent / "out" / "suite.jsonl"
VALID_ROWS = 400
NOISE = 0.2
SMALL_TABLE_TRAIN = 600  # fashion_mnist has 1,000 rows: 600 train + 400 validation at most


def _cell(method: str, table: str, size: int, seed: int, options: dict[str, Any],
          data_dir: str) -> dict[str, Any]:
    """One table, size and seed: the method's and every control's found@20 and AUROC."""
    from tables import protocol

    from dvrl_core import detection_auroc, found_fraction, prepare
    from dvrl_core.controls import all_controls
    from dvrl_core.methods import make_method

    split = protocol(table, seed, n_train=size, n_valid=VALID_ROWS, noise=NOISE,
                     data_dir=Path(data_dir))
    data = prepare(split.train, split.target, split.valid, test=split.test, task=split.task)
    started = time.perf_counter()
    valuer = make_method(method, random_state=seed, device="cpu", **options)
    result = valuer.fit(data)
    values = result.values
    seconds = time.perf_counter() - started
    # what DVRL's guard returned and how many iterations its loop ran (other methods: none)
    trust = result.diagnostics.get("trust", {})
    returned, verdict = trust.get("returned"), trust.get("verdict")
    used = result.diagnostics.get("convergence", {}).get("iterations_used")
    scores = {"ours": values} | all_controls(data, random_state=seed)
    figures = {name: {"found@20": found_fraction(v, split.corrupted, 0.2),
                      "auroc": detection_auroc(v, split.corrupted)}
               for name, v in scores.items()}
    return {"method": method, "options": options, "table": table, "size": size, "seed": seed,
            "code": CODE, "seconds": round(seconds, 2), "figures": figures,
            "returned": returned, "verdict": verdict, "iterations_used": used,
            "shift_applied": bool(result.diagnostics.get("shift", {}).get("applied")),
            "task": split.task}


def _code_version() -> str:
    """A digest of dvrl_core's source: a cached cell is reused only for the same code."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted((Path(__file__).resolve().parents[1] / "dvrl_core").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


CODE = _code_version()


def _key(cell: dict[str, Any]) -> str:
    return json.dumps([cell["method"], cell["options"], cell["table"], cell["size"],
                       cell["seed"], cell.get("code")], sort_keys=True)


def _done(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    cells = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {_key(cell): cell for cell in cells}


def _sizes_for(table: str, sizes: list[int]) -> list[int]:
    from tables import load_table

    rows = len(load_table(table))
    fitting = [s for s in sizes if s + VALID_ROWS <= rows]
    return fitting or [min(SMALL_TABLE_TRAIN, rows - VALID_ROWS)]


def run(args: argparse.Namespace) -> None:
    from tables import REGRESSION_SUITE, SUITE

    options: dict[str, Any] = json.loads(args.options) if args.options else {}
    if args.iterations:
        options["iterations"] = args.iterations
    tables = args.tables or list(REGRESSION_SUITE if args.regression else SUITE)
    wanted = [(t, s, seed) for t in tables for s in _sizes_for(t, args.sizes)
              for seed in range(args.seeds)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    done = _done(OUT)
    todo = [(t, s, seed) for t, s, seed in wanted
            if _key({"method": args.method, "options": options, "table": t, "size": s,
                     "seed": seed, "code": CODE}) not in done]
    print(f"{args.method} {options or '(defaults)'}: {len(wanted)} cells, {len(todo)} to run "
          f"in {args.jobs} processes", flush=True)
    # each process limits every thread pool to its share of the budget before its first cell
    with ProcessPoolExecutor(args.jobs, initializer=apply_thread_budget,
                             initargs=(split_budget(args.jobs),)) as pool:
        futures = [pool.submit(_cell, args.method, t, s, seed, options, str(args.data))
                   for t, s, seed in todo]
        for future in futures:
            cell = future.result()
            with OUT.open("a") as out:
                out.write(json.dumps(cell) + "\n")
            done[_key(cell)] = cell
            ours = cell["figures"]["ours"]
            print(f"  {cell['table']:<15} {cell['size']:>5} seed {cell['seed']}: found@20 "
                  f"{ours['found@20']:.3f} auroc {ours['auroc']:.3f} ({cell['seconds']:.0f} s"
                  + (f", returned {cell['returned']} after {cell['iterations_used']} iterations"
                     if cell.get("returned") else "") + ")", flush=True)
    report([done[_key({"method": args.method, "options": options, "table": t, "size": s,
                       "seed": seed, "code": CODE})] for t, s, seed in wanted])


def report(cells: list[dict[str, Any]]) -> None:
    """Per table (and size): means over seeds; then the mean over tables and the worst."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        groups[(cell["table"], cell["size"])].append(cell)
    names = ["ours", "marginal", "validation_logistic", "out_of_fold_logistic",
             "out_of_fold_lightgbm"]
    linear = "lin" if all(c.get("task") == "regression" for c in cells) else "LR"
    short = ["ours", "marginal", f"val-{linear}", f"oof-{linear}", "oof-LGBM"]
    for measure in ("found@20", "auroc"):
        print(f"\n{measure}, mean over seeds")
        print(f"{'table':<15}{'rows':>6}{'seeds':>6}" + "".join(f"{s:>10}" for s in short)
              + f"{'best ctl':>10}{'ours-best':>10}")
        deltas, ours_all, best_all = [], [], []
        for (table, size), group in sorted(groups.items()):
            means = {n: float(np.mean([c["figures"][n][measure] for c in group])) for n in names}
            best = max(means[n] for n in names[1:])
            deltas.append((means["ours"] - best, table, size))
            ours_all.append(means["ours"])
            best_all.append(best)
            print(f"{table:<15}{size:>6}{len(group):>6}" + "".join(f"{means[n]:>10.3f}"
                                                                for n in names)
                  + f"{best:>10.3f}{means['ours'] - best:>+10.3f}")
        worst = min(deltas)
        print(f"{'mean':<27}{np.mean(ours_all):>10.3f}{'':>40}{np.mean(best_all):>10.3f}"
              f"{np.mean(ours_all) - np.mean(best_all):>+10.3f}")
        print(f"worst table against its best control: {worst[1]} ({worst[2]} rows) "
              f"{worst[0]:+.3f}; lowest ours: {min(ours_all):.3f}")
    _report_verdicts(cells)
    seconds = [c["seconds"] for c in cells]
    print(f"\nour valuation time per cell: median {np.median(seconds):.1f} s, max "
          f"{max(seconds):.1f} s")


def _report_verdicts(cells: list[dict[str, Any]]) -> None:
    """How the jobs' trust verdicts (no ground truth) compare with the truth: how many said
    each, and how many "worse than the simple control" calls came where our values found more
    corrupted rows than the marginal control did (a false call)."""
    judged = [c for c in cells if c.get("verdict")]
    if not judged:
        return
    counts: dict[str, int] = defaultdict(int)
    false_calls = 0
    for cell in judged:
        word = cell["verdict"].split(":")[0]
        counts[word] += 1
        found = {n: cell["figures"][n]["found@20"] for n in ("ours", "marginal")}
        false_calls += word.startswith("worse") and found["ours"] > found["marginal"]
    print(f"\ntrust verdicts of {len(judged)} cells: "
          + ", ".join(f"{n} {word}" for word, n in sorted(counts.items()))
          + f"; 'worse than the simple control' where ours found more than the marginal: "
            f"{false_calls}")
    shifted = sum(bool(c.get("shift_applied")) for c in cells)
    print(f"covariate-shift weights applied (dvrl_core.shift) in {shifted} of {len(cells)} "
          "cells (the protocol's validation rows are a random draw: 0 expected)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--tables", nargs="+")
    parser.add_argument("--regression", action="store_true",
                        help="the regression tables (default: the classification ones); a "
                        "regression cell moves 20%% of the training targets far")
    parser.add_argument("--method", default="dvrl")
    parser.add_argument("--options", help="JSON of the method's parameters (default: none)")
    parser.add_argument("--jobs", type=int, default=2)
