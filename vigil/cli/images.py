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

    analyze = commands.add_parser("analyze", help="identity, age and gender of every face in images")
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
    for path, results in _identify_images(identifier, args.images):
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
    import numpy as np

    from indexer.identify import Identifier
    from vigil.models.attributes import load_attribute_head, predict_attributes
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    head, head_source = load_attribute_head(settings.home, pipeline.embedder.version)
    logger.info("attribute head: %s", head_source)
    identifier = Identifier.from_settings(Gallery.from_settings(settings), pipeline, settings)
    failures = 0
    for path, results in _identify_images(identifier, args.images):
        if results is None:
            failures += 1
            continue
        embeddings = np.zeros((len(results), head.in_dim), np.float32)
        for row, r in enumerate(results):
            embeddings[row] = r.face.embedding
        attributes = predict_attributes(head, embeddings)
        if args.json:
            faces = [{**r.to_dict(), **face.to_dict()} for r, face in zip(results, attributes, strict=True)]
            print(json.dumps({"image": str(path), "faces": faces}))
        else:
            print(f"{path}: {len(results)} face(s)")
            for r, face in zip(results, attributes, strict=True):
                print(
                    f"{_identity_line(r)}: age {face.age:.0f} ({face.age_range[0]}-{face.age_range[1]}), "
                    f"{face.gender} ({face.gender_confidence:.0%})"
                )
    return EXIT_ERROR if failures else 0


def _identify_images(
    identifier: Identifier, paths: Sequence[Path]
) -> Iterator[tuple[Path, list[Identification] | None]]:
    """Each image with its faces' identities; None for one that cannot be read (its error printed).

    Raises:
        GalleryError: The gallery holds templates of other models only: one error, not one per image.
    """
    from vigil.image import load_image

    identifier.pipeline.load()  # some embedders know their version, which selects the templates, only now
    identifier.check_gallery()
    for path in paths:
        try:
            yield path, identifier.identify(load_image(path))
        except VigilError as exc:
            print(f"vigil: error: {exc}", file=sys.stderr)
            yield path, None


def _identity_line(result: Identification) -> str:
    """One face's identity as the text output prints it."""
    box = ", ".join(f"{v:.0f}" for v in result.face.box_xyxy)
    return f"  {result.label} (similarity {result.decision.score:.3f}) at ({box})"
