"""``dvrl remote value``: ``dvrl value`` run by a DVRL server.

    dvrl remote value TRAIN --target COL [--valid VALID | --valid-fraction F] [...] \\
        [--server URL]

The arguments are ``dvrl value``'s own (:func:`dvrl_core.cli.add_value_arguments`) and so is the
output: the table (``row``, ``value``, ``rank``, ``label``, and ``noise_injected`` with
``--inject-noise``) to ``--out`` or standard output, progress and the summary on standard error,
``error: ...`` and exit status 2 for any error. The server is ``--server`` or ``DVRL_SERVER``;
the API key is read from ``DVRL_API_KEY`` only (a command line is visible to every user of the
machine). An option that cannot apply on a server is refused, never ignored.

Unlike the rest of dvrl_client, this command imports dvrl_core (its argument definitions and
summary), which does not import torch for them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from dvrl_core.cli import (
    EXIT_ERROR,
    REMOVED_FRACTIONS,
    ProgressPrinter,
    add_value_arguments,
    check_value_arguments,
    dvrl_options,
    print_summary,
    reader_left,
    values_to_stdout,
)
from dvrl_core.errors import ConfigError, DVRLError

from .client import Client, Job
from .errors import ClientError
from .resources import Progress

SERVER_DEVICES = ("auto", "cpu", "cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dvrl remote", description="Run the dvrl commands on a DVRL server.")
    commands = parser.add_subparsers(dest="command", required=True)
    value = commands.add_parser(
        "value", help="value the rows of a training table on a server (as dvrl value)")
    add_value_arguments(value)
    for action in value._actions:  # kept so that a dvrl value command line reads the same
        if action.dest == "threads":
            action.help = ("not on a server: its workers divide their own CPUs "
                           "(DVRL_WORKER_THREADS, dvrl worker --concurrency); refused")
    value.add_argument("--server", default=os.environ.get("DVRL_SERVER"),
                       help="the server's URL (default: $DVRL_SERVER); the API key, if the "
                       "server needs one, is read from $DVRL_API_KEY")
    return parser


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the job is cancelled as for Ctrl-C (Client.value)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `timeout`, a CI job cancelled, a closed terminal: the remote job is cancelled too, as for
    # Ctrl-C (it was left running)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop)
    try:
        return _value(args)
    except (DVRLError, ClientError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as interrupt:  # the notes: what became of the job (Client.value)
        outcome = "; ".join(getattr(interrupt, "__notes__", ()))
        print(f"error: interrupted{f' ({outcome})' if outcome else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dvrl remote value ... | head`
        return reader_left()


def spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job spec fields that ask the server for what ``dvrl value`` would do here."""
    check_value_arguments(args)
    options = dvrl_options(args)
    if args.device not in SERVER_DEVICES:
        raise ConfigError(f"--device {args.device!r}: a server takes auto, cpu or cuda (its "
                          "GPU workers choose the GPU)")
    fields: dict[str, Any] = {"task": args.task, "method": args.method, "seed": args.seed,
                              "device": args.device}
    if getattr(args, "threads", None) is not None:
        raise ConfigError("--threads: a server's workers divide their own CPUs "
                          "(DVRL_WORKER_THREADS, dvrl worker --concurrency)")
    if args.ensemble > 1:
        fields["ensemble"] = args.ensemble
    if args.id_column is not None:
        fields["id_column"] = args.id_column
    if args.features is not None:
        fields["features"] = args.features
    if args.inject_noise is not None:
        fields["label_noise"] = args.inject_noise
    if args.test is not None:  # the removal test's line in the summary, as dvrl value prints
        fields["evaluations"] = ["removal"]
    if args.method == "dvrl":
        fields["dvrl"] = {name: options[name] for name in ("metric", "iterations", "rollouts",
                                                           "tolerance", "shift")
                          if name in options}
        if "predictor" in options:
            fields["predictor"] = options["predictor"]
    return fields


def removal_summary(curve: Any) -> dict[str, Any]:
    """A job's removal curve (a DataFrame of ``Job.curves()``) at the fractions whose scores
    ``dvrl value --test`` prints, as its summary has them."""
    import numpy as np

    removed = curve["removed"].to_numpy()
    rows = [int(np.argmin(np.abs(removed - fraction))) for fraction in REMOVED_FRACTIONS]
    picked = curve.iloc[rows]
    return {"metric": curve.attrs["metric"], "model": curve.attrs["model"],
            "rows": curve.attrs["rows"],
            **{column: picked[column].round(4).tolist()
               for column in ("removed", "remove_lowest", "remove_highest", "random")}}


def _value(args: argparse.Namespace) -> int:
    from dvrl_core.io import write_table

    fields = spec_fields(args)
    if not args.server:
        raise ConfigError("give --server URL or set DVRL_SERVER")
    if not args.quiet:  # retries are worth knowing about while one waits
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("dvrl: %(message)s"))
        logging.getLogger("dvrl_client").addHandler(handler)
    printer = ProgressPrinter(not args.quiet)

    def progress(state: Progress) -> None:
        if state.phase == "training" and None not in (state.iteration, state.total,
                                                       state.elapsed_s):  # reward: DVRL's
            printer(state)

    def announce(job: Job) -> None:
        if not args.quiet:
            print(f"job {job.id} on {args.server}", file=sys.stderr)

    valid = args.valid if args.valid is not None else args.valid_fraction
    try:
        client = Client(args.server, os.environ.get("DVRL_API_KEY") or None)
    except ValueError as exc:  # a URL that is not http(s), a key no header can carry
        raise ConfigError(str(exc)) from exc  # it names the URL or the key
    with client:
        try:
            table = client.value(args.train, target=args.target, valid=valid, test=args.test,
                                 progress=progress, on_submit=announce, **fields)
        finally:
            printer.close()
        if args.test is not None and not args.quiet:  # the job's removal curve, at dvrl value's
            removal = client.job(table.attrs["job_id"]).curves().get("removal")  # fractions
            if removal is not None:
                table.attrs["summary"] = table.attrs["summary"] | {
                    "removal": removal_summary(removal)}
    if args.out:
        write_table(table, args.out)
    else:
        values_to_stdout(table)
    if not args.quiet:
        print_summary(table.attrs["summary"], table, args.out)
    return 0
