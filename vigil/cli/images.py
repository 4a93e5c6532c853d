"""``vigil detect``, ``vigil identify`` and ``vigil analyze``: the faces in image files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.gallery import Gallery
from vigil.config import Settings
from vigil.errors import VigilError

if TYPE_CHECKING:
    from indexer.identify import Identification, Identifier
    from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

EXIT_ERROR = 2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    detect = commands.add_parser("detect", help="find and embed the faces in images")
    detect.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    detect.add_argument("--json", action="store_true", help="one JSON object per image")
    detect.set_defaults(handler=cmd_detect)

    identify = commands.add_parser("identify", help="name every face in images (or say unknown)")
    identify.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    identify.add_argument("--json", action="store_true", help="one JSON object per image")
    identify.set_defaults(handler=cmd_identify)

    analyze = commands.add_parser(
        "analyze", help="identity, age, gender and expression of every face in images"
    )
    analyze.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    analyze.add_argument("--json", action="store_true", help="one JSON object per image")
    analyze.set_defaults(handler=cmd_analyze)


def cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.image import load_image
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    failures = 0
    for path in args.images:
        try:
            image = load_image(path)
        except VigilError as exc:
            print(f"vigil: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        faces = pipeline.analyze([image])[0]
        if args.json:
            print(
                json.dumps(
                    {
                        "image": str(path),
                        "faces": [
                            {
                                "box_xyxy": [round(float(v), 1) for v in face.box_xyxy],
                                "score": round(face.score, 4),
                                "landmarks": face.landmarks.round(1).tolist(),
                                "embedding": face.embedding.round(5).tolist(),
                            }
                            for face in faces
                        ],
                    }
                )
            )
        else:
            print(f"{path}: {len(faces)} face(s)")
            for face in faces:
                box = ", ".join(f"{v:.0f}" for v in face.box_xyxy)
                print(f"  box ({box}) score {face.score:.3f} size {face.size_px:.0f}px")
    return EXIT_ERROR if failures else 0


def cmd_identify(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.identify import Identifier
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    identifier = Identifier.from_settings(Gallery.from_settings(settings), pipeline, settings)
    failures = 0
    for path, _, results in _identify_images(identifier, args.images):
        if results is None:
            failures += 1
        elif args.json:
            print(json.dumps({"image": str(path), "faces": [r.to_dict() for r in results]}))
        else:
            print(f"{path}: {len(results)} face(s)")
            for r in results:
                print(_identity_line(r))
    return EXIT_ERROR if failures else 0


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.identify import Identifier
    from vigil.models import expression
    from vigil.models.attribute_model import load_attribute_model
    from vigil.models.head_pose import head_pose_in_box, pose_to_dict
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    attribute_model = load_attribute_model(settings, pipeline.embedder.version)
    # Missing expression weights cost the expression only (null, and one warning), not the analysis.
    expression_model = expression.load_installed(settings.model_files_dir)
    identifier = Identifier.from_settings(Gallery.from_settings(settings), pipeline, settings)
    failures = 0
    for path, image, results in _identify_images(identifier, args.images):
        if results is None or image is None:
            failures += 1
            continue
        attributes = attribute_model.estimate(image, [r.face for r in results])
        expressions = (
            expression.expressions_in(expression_model, image, [r.face.box_xyxy.tolist() for r in results])
            if expression_model is not None
            else [None] * len(results)
        )
        if args.json:
            faces = [
                {
                    **r.to_dict(),
                    **face.to_dict(),
                    "expression": expression.expression_to_dict(probabilities),
                    "pose": pose_to_dict(head_pose_in_box(r.face.landmarks, r.face.box_xyxy)),
                }
                for r, face, probabilities in zip(results, attributes, expressions, strict=True)
            ]
            print(json.dumps({"image": str(path), "faces": faces}))
        else:
            print(f"{path}: {len(results)} face(s)")
            for r, face, probabilities in zip(results, attributes, expressions, strict=True):
                look = ""  # how the face looks to the model, not what anyone feels
                if probabilities is not None:
                    label, probability = expression.top_expression(probabilities)
                    look = f", looks {label} ({probability:.0%})"
                pose = head_pose_in_box(r.face.landmarks, r.face.box_xyxy)
                if pose is not None:
                    look += f", yaw {pose.yaw:+.0f}° pitch {pose.pitch:+.0f}° roll {pose.roll:+.0f}°"
                print(
                    f"{_identity_line(r)}: age {face.age:.0f} ({face.age_range[0]}-{face.age_range[1]}), "
                    f"{face.gender} ({face.gender_confidence:.0%}){look}"
                )
    return EXIT_ERROR if failures else 0


def _identify_images(
    identifier: Identifier, paths: Sequence[Path]
) -> Iterator[tuple[Path, ImageRGB | None, list[Identification] | None]]:
    """Each image (RGB) with its faces' identities; Nones for one that cannot be read (its error printed).

    Raises:
        GalleryError: The gallery holds templates of other models only: one error, not one per image.
    """
    from vigil.image import load_image

    identifier.pipeline.load()  # some embedders know their version, which selects the templates, only now
    identifier.check_gallery()
    for path in paths:
        try:
            image = load_image(path)
            results = identifier.identify(image)
        except VigilError as exc:
            print(f"vigil: error: {exc}", file=sys.stderr)
            yield path, None, None
        else:
            yield path, image, results


def _identity_line(result: Identification) -> str:
    """One face's identity as the text output prints it."""
    box = ", ".join(f"{v:.0f}" for v in result.face.box_xyxy)
    return f"  {result.label} (similarity {result.decision.score:.3f}) at ({box})"
