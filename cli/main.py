"""``idsuite``: run the battery over the zoo (``run``), show the zoo (``list``), browse and export
the results (``leaderboard``, ``export``).

The parser needs only the metric declarations (``idsuite.suite.specs``); each command imports what it
needs when it runs, so ``idsuite --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from idsuite.cli.errors import CliError
from idsuite.runners.models.zoo import DEFAULT_ZOO
from idsuite.runners.probing.corpus import CorpusSpec
from idsuite.runners.run_config import RUN_DTYPES, RunConfig
from idsuite.suite.specs import SPECS
from idsuite.suite.specs.sample import StraddlingSample

DEFAULT_RESULTS = "idsuite-results"
RUN, CORPUS = RunConfig(), CorpusSpec()
"""The run's and the corpus's declared defaults, shown as the options' defaults."""


INT64 = (-(1 << 63), (1 << 63) - 1)
"""The range every integer option must fit: the store keeps integers as int64, and torch, NumPy and
DuckDB take nothing wider."""


def int64(text: str) -> int:
    """An integer option's value, refused where it is parsed when it is not an integer or does not
    fit ``INT64`` (argparse reports it as one line naming the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer value: {text[:40]!r}") from None
    if not INT64[0] <= value <= INT64[1]:
        raise argparse.ArgumentTypeError(f"{text[:40]} does not fit in 64 bits")
    return value


_PER_HEAD_SIZE = StraddlingSample.model_fields["max_tokens_per_head_size"].default
METRIC_OPTIONS = {  # command-line option -> (metric, config key, help, type)
    "attribution_method": ("hidden_token_attribution", "method", "'exact' or 'estimate' Jacobian norms", str),
    "attribution_probes": ("hidden_token_attribution", "probes", "probe directions per token (estimate)", int64),
    "attribution_sequences": ("hidden_token_attribution", "max_sequences",
                              "most sequences attributed (it stops earlier once the target interval is met)", int64),
    "attribution_max_tokens": ("hidden_token_attribution", "max_tokens", "longest sequence for attribution (default "
                               f"{_PER_HEAD_SIZE:g} x the model's head size d_h, rounded up, so that the sample "
                               "straddles d_h)", int64),
    "mixing_reference": ("context_mixing", "reference", "'exact' or 'estimate' attribution the context-mixing "
                         "measures are scored against", str),
    "mixing_sequences": ("context_mixing", "max_sequences", "most sequences the context-mixing measures are scored on "
                         "(it stops earlier once the target interval is met)", int64),
    "mixing_target": ("context_mixing", "target_half_width", "context mixing scores sequences until every measure's "
                      "last-layer Spearman score is known to +- this (95%% interval)", float),
    "attribution_max_flops": ("hidden_token_attribution", "max_flops", "cost budget of attribution per model, in "
                              "floating-point operations (a rough count; the sample ends where the next sequence would "
                              "pass it)", float),
    "mixing_max_flops": ("context_mixing", "max_flops", "cost budget of context mixing per model, in floating-point "
                         "operations (the same rough count)", float),
    "mixing_max_tokens": ("context_mixing", "max_tokens", "longest sequence the context-mixing measures are scored on "
                          "(3 to 1024; longer ones are left out and counted)", int64),
    "feasible_sequences": ("feasible_attention", "max_sequences", "most sequences whose rows are solved for feasible "
                           "attention (it stops earlier once the target interval is met)", int64),
    "feasible_rows": ("feasible_attention", "rows_per_sequence", "query rows solved per sequence, layer and head for "
                      "feasible attention", int64),
    "feasible_max_tokens": ("feasible_attention", "max_tokens", "longest sequence for feasible attention (default "
                            f"{_PER_HEAD_SIZE:g} x the model's head size d_h, rounded up, so that the sample straddles d_h)",
                            int64),
    "mlp_epochs": ("token_identifiability", "mlp_max_epochs",
                   "most training epochs of an MLP map g (it stops earlier once converged)", int64),
}


def _shown(default: object) -> str:
    """A default as the help shows it: floats in their shortest form (2e15, 0.05)."""
    return f"{default:g}".replace("e+", "e") if isinstance(default, float) else str(default)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (no usage dump), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR",
                        help=f"result store folder (default: {DEFAULT_RESULTS})")


def _zoo_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zoo", default=str(DEFAULT_ZOO), metavar="FILE", help="model zoo file (default: the zoo that ships with idsuite)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="idsuite", description="Identifiability in transformers, as a benchmark.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the battery on zoo models (default: the 'default' tag)",
                         description="Run the battery on zoo models; finished cells are never recomputed.")
    _zoo_option(run)
    run.add_argument("--models", nargs="+", metavar="NAME",
                     help="entry ids or tags ('default', 'all-offline', 'packaged', 'control', 'hub', 'all', ...)")
    _results_option(run)
    run.add_argument("--metrics", nargs="+", metavar="NAME", default=None,
                     help=f"run only these metrics (default: all of {', '.join(SPECS)})")
    run.add_argument("--corpus", default=CORPUS.source, help="'lee' (packaged), 'mrpc' (hub), a hub dataset id or a local file")
    run.add_argument("--corpus-config", default=CORPUS.config, help="dataset config name (hub datasets)")
    run.add_argument("--split", default=CORPUS.split, help=f"dataset split (hub datasets; default {CORPUS.split})")
    run.add_argument("--text-column", default=CORPUS.text_column, help=f"column holding the sentence (default {CORPUS.text_column})")
    run.add_argument("--pair-column", default=CORPUS.pair_column, help="column holding a second sentence, encoded as a pair")
    run.add_argument("--max-sequences", type=int64, default=CORPUS.max_sequences,
                     help=f"probe sequences per model (default {CORPUS.max_sequences})")
    run.add_argument("--max-tokens", type=int64, default=RUN.max_tokens, help=f"longest sequence kept (default {RUN.max_tokens})")
    run.add_argument("--batch-size", type=int64, default=RUN.batch_size, help=f"most sequences per forward pass (default {RUN.batch_size})")
    run.add_argument("--batch-map-elements", type=int64, default=RUN.batch_map_elements,
                     help=f"most attention-map entries per forward pass, sequences x heads x n^2 (default {RUN.batch_map_elements}); "
                          "longer sequences go in smaller batches, one at least")
    for option, (metric, key, text, kind) in METRIC_OPTIONS.items():  # None keeps the metric config's default
        default = SPECS.get(metric).config_type.model_fields[key].default  # None: the help text says what it is
        run.add_argument(f"--{option.replace('_', '-')}", type=kind,
                         help=text if default is None else f"{text} (default {_shown(default)})")
    run.add_argument("--seed", type=int64, default=RUN.seed, help=f"corpus order, splits and probes (default {RUN.seed})")
    run.add_argument("--device", default=RUN.device, help="'auto' (cuda where present, else cpu), 'cpu', 'cuda', 'cuda:1'")
    run.add_argument("--dtype", default=RUN.dtype, choices=RUN_DTYPES,
                     help="forward-pass dtype; 'auto': bfloat16 on a GPU, the entry's dtype on the CPU")
    run.add_argument("--recompute", action="store_true", help="recompute cells that are already finished")
    run.add_argument("--backend", default="local", choices=["local", "ray"],
                     help="'local' (this process, the default) or 'ray' (one task per model on a Ray cluster)")
    run.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                     help="the Ray cluster to use with --backend ray ('auto': the one this machine belongs to; "
                          "default: a new local one)")
    lst = sub.add_parser("list", help="show the zoo entries and any bad ones",
                         description="Show the zoo entries, whether their weights are available, and any bad entries.")
    _zoo_option(lst)
    _results_option(lst)
    lst.add_argument("--wide", action="store_true", help="full weight fingerprints and error texts, whatever the width")
    board = sub.add_parser("leaderboard", help="browse the results in a Streamlit app")
    _results_option(board)
    board.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    board.add_argument("--port", type=int64, default=8501, help="port to serve on (default 8501)")
    export = sub.add_parser("export", help="write the main table (LaTeX) and per-layer figures (PNG, PDF)",
                            description="Paper export; per metric, the setting most models have.")
    _results_option(export)
    export.add_argument("--out", default="paper", metavar="DIR", help="output folder (default: paper)")
    export.add_argument("--compare", nargs="+", metavar="MODEL",
                        help="also write MODEL_A minus MODEL_B (default: A's random-init control) per layer with "
                             "paired bootstrap intervals")
    return parser


INTERRUPTED = 130
"""Exit code after a Ctrl-C (128 + SIGINT, as the shell reports a process ended by it)."""
QUICK_EXIT = {"list", "export"}
"""Read-only commands that leave without tearing the interpreter down once their output is flushed:
unloading the ~900 modules of pandas, DuckDB and matplotlib takes a quarter of a second, and
nothing of theirs waits for exit (their files are closed when they return)."""


def _dispatch(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "run":
            from idsuite.cli.run import run_command
            return run_command(args)
        if args.command == "list":
            from idsuite.cli.listing import list_command
            return list_command(args)
        from idsuite.cli.board import export_command, leaderboard_command
        return {"leaderboard": leaderboard_command, "export": export_command}[args.command](args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run one ``idsuite`` command line; its exit code."""
    return _dispatch(build_parser().parse_args(argv))


def command() -> None:
    """The ``idsuite`` console command: ``main``, then the exit (``QUICK_EXIT`` commands skip the
    interpreter's teardown)."""
    args = build_parser().parse_args()
    try:
        code = _dispatch(args)
        sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C outside a run's models (``idsuite run`` handles its own)
        print(f"\ninterrupted: idsuite {args.command} stopped (Ctrl-C)", file=sys.stderr)
        code = INTERRUPTED
    except BrokenPipeError:  # e.g. `idsuite list | head -1`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that no later flush fails
        code = 128 + 13  # as a process ended by SIGPIPE
    if args.command in QUICK_EXIT:
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    command()
