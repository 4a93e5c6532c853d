"""``vigil bench pairs``: the LFW verification protocol on any pairs list.

The pairs come in LFW ``pairs.txt`` format or as plain ``path_a path_b same [fold]`` lines
(``trainer.pairs``), paths relative to ``--images``; this is how cross-age sets such as
AgeDB-30, CALFW or CACD, and a user's own sets, are evaluated. Each fold's threshold is
chosen on the other folds (``trainer.lfw.run_pairs_bench``); a plain file without folds is
dealt round-robin into ``--folds`` folds. The JSON has the keys of ``vigil bench lfw``.

Such sets are usually face crops already, on which MTCNN can miss the face: an image
without a detected face is embedded whole (resized to the chip, as the aligned face), and
the reports count those images (``no_face_count``).

With ``--template-aging PROBES`` instead of ``--pairs`` it is the entry point for
cross-age evaluation of template aging: a chronologically ordered probe list
(``trainer.probe_list``) is walked with and without gallery updates
(``trainer.aging_simulation``, ``trainer.bench_aging``).

This module only wires the command: the benchmark (and torch) loads when the command runs,
not on every ``vigil`` call.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.pairs import DEFAULT_FOLDS, read_pairs
from trainer.probe_list import read_probe_list
from vigil.config import Settings
from vigil.errors import DatasetError

if TYPE_CHECKING:
    from trainer.lfw import Metric

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("bench-results/pairs.json")
DEFAULT_AGING_JSON = Path("bench-results/template-aging.json")
DEFAULT_METRIC: Metric = "cosine"  # embeddings carry direction only (the Embedder contract)
MIN_FOLDS = 2
"""Cross-validation needs a fold to hold out and at least one to choose the threshold on."""


def add_command(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pairs`` to the ``vigil bench`` sub-commands."""
    parser = bench.add_parser(
        "pairs",
        help="verification accuracy on any pairs list (LFW pairs.txt or 'path_a path_b same [fold]'), "
        "or template aging over a chronological probe list",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--pairs", type=Path, help="the pairs file")
    data.add_argument(
        "--template-aging",
        type=Path,
        metavar="PROBES",
        help="walk a chronological probe list ('NAME PATH' lines, oldest first; each person's first line "
        "enrols them) with and without template aging",
    )
    parser.add_argument(
        "--images", type=Path, required=True, help="folder the list's relative image paths are relative to"
    )
    parser.add_argument(
        "--folds",
        type=_fold_count,
        help=f"pairs: folds to deal the pairs into when the file gives none (default: {DEFAULT_FOLDS})",
    )
    parser.add_argument(
        "--metric", choices=["euclidean", "cosine"], help=f"pairs: pair score (default: {DEFAULT_METRIC})"
    )
    parser.add_argument(
        "--threshold",
        type=_cosine,
        help="template aging: match threshold (cosine) instead of the calibrated one for the gallery's size",
    )
    parser.add_argument(
        "--margin", type=_margin, help="template aging: match margin instead of the calibrated one"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help=f"results JSON, Markdown (and for pairs a PNG) beside it (default: {DEFAULT_JSON}, "
        f"or {DEFAULT_AGING_JSON} with --template-aging)",
    )
    parser.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    parser.set_defaults(handler=cmd_bench_pairs)


def cmd_bench_pairs(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench pairs``: check the arguments and the list, run, write the reports, print the summary.

    Raises:
        DatasetError: Options of the other mode were given, the pairs file or probe list or
            their images are missing or malformed, or the pairs cannot be cross-validated.
    """
    aging = args.template_aging is not None
    other_mode = (
        {"--folds": args.folds, "--metric": args.metric}
        if aging
        else {"--threshold": args.threshold, "--margin": args.margin}
    )
    misplaced = [name for name, value in other_mode.items() if value is not None]
    if misplaced:
        mode, other = ("--template-aging", "--pairs") if aging else ("--pairs", "--template-aging")
        verb, pronoun = ("go", "them") if len(misplaced) > 1 else ("goes", "it")
        raise DatasetError(f"{' and '.join(misplaced)} {verb} with {other}, not {mode}; leave {pronoun} out")
    if aging:
        return _bench_template_aging(args, settings)
    from trainer.lfw import run_pairs_bench  # loads torch: only when the command runs

    pairs = read_pairs(args.pairs, args.images, folds=args.folds or DEFAULT_FOLDS)
    json_path = args.json or DEFAULT_JSON
    json_path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    result = run_pairs_bench(
        settings,
        pairs,
        args.images,
        json_path,
        f"Pairs {args.pairs.name}",
        use_cache=not args.no_cache,
        metric=args.metric or DEFAULT_METRIC,
        fallback="whole_image",
    )
    print(result.summary)
    return 0


def _bench_template_aging(args: argparse.Namespace, settings: Settings) -> int:
    """``--template-aging``: the probe list walked with and without gallery updates."""
    from trainer.bench_aging import run_aging_bench  # loads torch: only when the command runs

    probe_list = read_probe_list(args.template_aging, args.images)
    json_path = args.json or DEFAULT_AGING_JSON
    json_path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    overrides = {
        key: value
        for key, value in (("match_threshold", args.threshold), ("match_margin", args.margin))
        if value is not None
    }
    indexer = settings.indexer.model_copy(update=overrides)
    result = run_aging_bench(
        settings.model_copy(update={"indexer": indexer}),
        probe_list,
        args.images,
        json_path,
        f"Template aging {args.template_aging.name}",
        use_cache=not args.no_cache,
    )
    print(result.summary)
    return 0


def _cosine(text: str) -> float:
    """``--threshold``: a cosine similarity, -1 to 1."""
    return _number_in(text, -1.0, 1.0)


def _margin(text: str) -> float:
    """``--margin``: a lead in cosine similarity, 0 to 2."""
    return _number_in(text, 0.0, 2.0)


def _number_in(text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
    return value


def _fold_count(text: str) -> int:
    """``--folds``: an integer of at least :data:`MIN_FOLDS`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < MIN_FOLDS:
        raise argparse.ArgumentTypeError(f"need at least {MIN_FOLDS} folds for cross-validation, got {value}")
    return value
