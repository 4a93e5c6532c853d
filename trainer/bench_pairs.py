"""``vigil bench pairs``: the LFW verification protocol on any pairs list.

The pairs come in LFW ``pairs.txt`` format or as plain ``path_a path_b same [fold]`` lines
(``trainer.pairs``), paths relative to ``--images``; this is how cross-age sets such as
AgeDB-30, CALFW or CACD, and a user's own sets, are evaluated. Each fold's threshold is
chosen on the other folds (``trainer.lfw.run_pairs_bench``); a plain file without folds is
dealt round-robin into ``--folds`` folds. The JSON has the keys of ``vigil bench lfw``.

Such sets are usually face crops already, on which MTCNN can miss the face: an image
without a detected face is embedded whole (resized to the chip, as the aligned face), and
the reports count those images (``no_face_count``).

This module only wires the command: the benchmark (and torch) loads when the command runs,
not on every ``vigil`` call.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from trainer.pairs import DEFAULT_FOLDS, read_pairs
from vigil.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("bench-results/pairs.json")
MIN_FOLDS = 2
"""Cross-validation needs a fold to hold out and at least one to choose the threshold on."""


def add_command(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pairs`` to the ``vigil bench`` sub-commands."""
    parser = bench.add_parser(
        "pairs", help="verification accuracy on any pairs list (LFW pairs.txt or 'path_a path_b same [fold]')"
    )
    parser.add_argument("--pairs", type=Path, required=True, help="the pairs file")
    parser.add_argument(
        "--images", type=Path, required=True, help="folder the pairs file's image paths are relative to"
    )
    parser.add_argument(
        "--folds",
        type=_fold_count,
        default=DEFAULT_FOLDS,
        help="folds to deal the pairs into when the file gives none (default: %(default)s)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="results JSON, Markdown and PNG beside it"
    )
    parser.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    parser.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean", help="pair score")
    parser.set_defaults(handler=cmd_bench_pairs)


def cmd_bench_pairs(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench pairs``: read and check the pairs, run, write the reports, print the summary.

    Raises:
        DatasetError: The pairs file or its images are missing or malformed, or the pairs
            cannot be cross-validated.
    """
    from trainer.lfw import run_pairs_bench  # loads torch: only when the command runs

    pairs = read_pairs(args.pairs, args.images, folds=args.folds)
    args.json.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    result = run_pairs_bench(
        settings,
        pairs,
        args.images,
        args.json,
        f"Pairs {args.pairs.name}",
        use_cache=not args.no_cache,
        metric=args.metric,
        fallback="whole_image",
    )
    print(result.summary)
    return 0


def _fold_count(text: str) -> int:
    """``--folds``: an integer of at least :data:`MIN_FOLDS`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < MIN_FOLDS:
        raise argparse.ArgumentTypeError(f"need at least {MIN_FOLDS} folds for cross-validation, got {value}")
    return value
