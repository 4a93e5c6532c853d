"""``vigil calibrate``: the command's arguments and handler (the method is in ``trainer.calibrate``).

This module only wires the command: ``trainer.calibrate`` (and torch) loads when the
command runs, not on every ``vigil`` call.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vigil.arguments import probability
from vigil.config import Settings
from vigil.errors import DatasetError

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("bench-results/calibration.json")
DEFAULT_TARGET_FAR = 1e-3


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``calibrate`` to the ``vigil`` commands."""
    parser = commands.add_parser(
        "calibrate",
        help="fit the match thresholds to a target false-accept rate on your own photos or pairs",
        description=(
            "Score genuine and impostor pairs, fit the verification threshold and the identification "
            "threshold + margin that meet the target FAR, store the calibration as a versioned artifact "
            "and put it in force (a running service reloads it)."
        ),
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--pairs", type=Path, help="pairs file: LFW pairs.txt or 'path_a path_b same [fold]' lines"
    )
    data.add_argument("--from-dir", type=Path, help="folder with one sub-folder of photos per person")
    parser.add_argument(
        "--images", type=Path, help="with --pairs: the folder its image paths are relative to"
    )
    parser.add_argument(
        "--target-far",
        type=probability,
        default=DEFAULT_TARGET_FAR,
        help="false accept rate to meet (default: %(default)g; needs about 3/FAR impostor pairs)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="results JSON; Markdown and PNGs beside it"
    )
    parser.add_argument(
        "--no-promote", action="store_true", help="store the calibration without putting it in force"
    )
    parser.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    parser.add_argument(
        "--with-feedback",
        action="store_true",
        help="also score the corrections given with `vigil feedback` (--is: genuine, --not: impostor pairs)",
    )
    parser.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil calibrate``: check the arguments, calibrate, print the summary.

    Raises:
        DatasetError: ``--images`` is missing with ``--pairs`` or given with ``--from-dir``,
            or the data is missing or malformed.
        CalibrationError: The data cannot support the target FAR.
    """
    if args.pairs is not None and args.images is None:
        raise DatasetError(
            "--pairs needs --images DIR, the folder the pairs file's image paths are relative to"
        )
    if args.from_dir is not None and args.images is not None:
        raise DatasetError("--images goes with --pairs; with --from-dir the photos are in the person folders")
    from trainer.calibrate import PairsFile, PeopleFolder, run_calibration  # loads torch: only now

    data = PairsFile(args.pairs, args.images) if args.pairs is not None else PeopleFolder(args.from_dir)
    feedback_from = None
    if args.with_feedback:
        from indexer.gallery import Gallery
        from vigil.streams import connect_redis

        feedback_from = Gallery(connect_redis(settings.redis, settings.home))
    args.json.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    result = run_calibration(
        settings,
        data,
        args.json,
        target_far=args.target_far,
        promote=not args.no_promote,
        use_cache=not args.no_cache,
        feedback_from=feedback_from,
    )
    print(result.summary)
    return 0
