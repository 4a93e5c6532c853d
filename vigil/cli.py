"""The ``vigil`` command line.

Only this module reads argv and configures logging; the service's commands
(``run``, ``events``, ``status``) are added from ``streamer.commands``. Every ``VigilError`` ends as
one line on stderr (``vigil: error: ...``) and exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from streamer.bench_cameras import add_command as add_cameras_bench
from streamer.bench_faults import add_command as add_faults_bench
from streamer.bench_stream import add_command as add_stream_bench
from streamer.commands import add_commands as add_streamer_commands
from streamer.learning_commands import add_commands as add_learning_commands
from streamer.learning_commands import add_people_actions
from trainer.artifact_commands import add_command as add_models_command
from trainer.bench_pairs import add_command as add_pairs_bench
from trainer.calibrate_command import add_command as add_calibrate_command
from trainer.train_attributes import add_command as add_attributes_commands
from trainer.train_head import add_command as add_train_head
from vigil import __version__
from vigil.arguments import positive_int, probability, writable_json
from vigil.config import Settings, load_settings
from vigil.errors import VigilError

if TYPE_CHECKING:
    from indexer.gallery import Gallery
    from indexer.identify import Identification, Identifier
    from indexer.records import Identity

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_LFW_DIR = Path("../shared/data/lfw")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vigil`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace, Settings], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        settings = load_settings(args.config)
        return handler(args, settings)
    except VigilError as exc:
        print(f"vigil: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vigil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        sys.stderr.close()
        return 0
    except OSError as exc:  # e.g. an unwritable --json location
        print(f"vigil: error: {exc.strerror or exc}: {exc.filename or ''}; check the path", file=sys.stderr)
        return EXIT_USAGE


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Streaming face recognition.")
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML settings file (default: $VIGIL_CONFIG)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    add_streamer_commands(commands)
    add_learning_commands(commands)
    train = add_train_head(commands)
    add_models_command(commands)
    add_calibrate_command(commands)

    detect = commands.add_parser("detect", help="find and embed the faces in images")
    detect.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    detect.add_argument("--json", action="store_true", help="one JSON object per image")
    detect.set_defaults(handler=_cmd_detect)

    enroll = commands.add_parser(
        "enroll", help="enrol a person from photos (or every sub-folder of a folder)"
    )
    enroll.add_argument("name", nargs="?", help="the person's name (omit with --from-dir)")
    enroll.add_argument("images", nargs="*", type=Path, metavar="IMAGE", help="photos, or folders of photos")
    enroll.add_argument("--from-dir", type=Path, help="a folder with one sub-folder of photos per person")
    enroll.add_argument("--add", action="store_true", help="add photos to an already enrolled person")
    enroll.set_defaults(handler=_cmd_enroll)

    people = commands.add_parser(
        "people", help="list, show, rename or delete enrolled people"
    ).add_subparsers(title="actions", metavar="ACTION", required=True)
    people.add_parser("list", help="every enrolled person").set_defaults(handler=_cmd_people_list)
    show = people.add_parser("show", help="one person and their templates")
    show.add_argument("name")
    show.set_defaults(handler=_cmd_people_show)
    rename = people.add_parser("rename", help="change a person's name")
    rename.add_argument("name")
    rename.add_argument("new_name")
    rename.set_defaults(handler=_cmd_people_rename)
    delete = people.add_parser("delete", help="erase a person and all their templates")
    delete.add_argument("name")
    delete.set_defaults(handler=_cmd_people_delete)
    add_people_actions(people)

    gallery_cmd = commands.add_parser("gallery", help="back up or restore the gallery").add_subparsers(
        title="actions", metavar="ACTION", required=True
    )
    export = gallery_cmd.add_parser(
        "export", help="write every person (templates, corrections, history, aging opt-in) to a portable file"
    )
    export.add_argument("file", type=Path)
    export.set_defaults(handler=_cmd_gallery_export)
    restore = gallery_cmd.add_parser("import", help="add the people of an export file (all or nothing)")
    restore.add_argument("file", type=Path)
    restore.set_defaults(handler=_cmd_gallery_import)

    reembed = gallery_cmd.add_parser(
        "reembed", help="add templates for the current embedder from kept enrolment photos"
    )
    reembed.set_defaults(handler=_cmd_gallery_reembed)

    identify = commands.add_parser("identify", help="name every face in images (or say unknown)")
    identify.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    identify.add_argument("--json", action="store_true", help="one JSON object per image")
    identify.set_defaults(handler=_cmd_identify)

    analyze = commands.add_parser("analyze", help="identity, age and gender of every face in images")
    analyze.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    analyze.add_argument("--json", action="store_true", help="one JSON object per image")
    analyze.set_defaults(handler=_cmd_analyze)

    check = commands.add_parser("check-config", help="validate the settings and print them")
    check.add_argument("--docs", action="store_true", help="print the settings reference (Markdown) instead")
    check.set_defaults(handler=_cmd_check_config)

    bench = commands.add_parser("bench", help="accuracy and speed benchmarks").add_subparsers(
        title="benchmarks", metavar="BENCHMARK", required=True
    )
    add_stream_bench(bench)
    add_cameras_bench(bench)
    add_faults_bench(bench)
    add_pairs_bench(bench)
    add_attributes_commands(train, bench)
    lfw = bench.add_parser("lfw", help="LFW 10-fold verification accuracy (View 2, pairs.txt)")
    lfw.add_argument("--data", type=Path, default=DEFAULT_LFW_DIR, help="LFW folder with pairs.txt")
    lfw.add_argument("--json", type=writable_json, default="bench-results/lfw.json", help="results JSON")
    lfw.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    lfw.add_argument("--metric", choices=["euclidean", "cosine"], default="cosine", help="pair score")
    lfw.set_defaults(handler=_cmd_bench_lfw)

    identify_bench = bench.add_parser("identify", help="LFW open-set identification (DIR at FPIR, rank-1)")
    identify_bench.add_argument("--data", type=Path, default=DEFAULT_LFW_DIR, help="LFW folder")
    identify_bench.add_argument(
        "--json", type=writable_json, default="bench-results/identify.json", help="results JSON"
    )
    identify_bench.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    identify_bench.add_argument(
        "--calibration-out", type=writable_json, help="also fit the decision rule and write it here"
    )
    identify_bench.add_argument(
        "--target-fpir",
        type=probability,
        nargs="+",
        default=[1e-2, 1e-3],
        help="FPIRs to fit rules for (one rule set each)",
    )
    identify_bench.set_defaults(handler=_cmd_bench_identify)

    fusion = bench.add_parser("fusion", help="LFW verification and open set: two embedders and their fusion")
    fusion.add_argument("--data", type=Path, default=DEFAULT_LFW_DIR, help="LFW folder")
    fusion.add_argument(
        "--json", type=writable_json, default="bench-results/fusion.json", help="results JSON"
    )
    fusion.add_argument(
        "--with",
        dest="other_backend",
        choices=["dlib_resnet", "sface"],
        default="dlib_resnet",
        help="the embedder fused with the configured one",
    )
    fusion.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    fusion.set_defaults(handler=_cmd_bench_fusion)

    embed = bench.add_parser(
        "embed", help="embedder faces/s (dlib ResNet, SFace) vs dlib's and OpenCV's own implementations"
    )
    embed.add_argument("--json", type=writable_json, default="bench-results/embed.json", help="results JSON")
    embed.add_argument("--repeats", type=positive_int, default=5, help="timed passes per configuration")
    embed.set_defaults(handler=_cmd_bench_embed)

    index_bench = bench.add_parser("index", help="FAISS index build/latency/recall on a synthetic gallery")
    index_bench.add_argument("--size", type=positive_int, default=1_000_000, help="templates in the gallery")
    index_bench.add_argument("--dim", type=positive_int, default=128, help="embedding dimension")
    index_bench.add_argument("--queries", type=positive_int, default=1000, help="queries to time")
    index_bench.add_argument(
        "--probes", type=positive_int, default=32, help="IVF lists searched per query (nprobe)"
    )
    index_bench.add_argument(
        "--json", type=writable_json, default="bench-results/index.json", help="results JSON"
    )
    index_bench.set_defaults(handler=_cmd_bench_index)

    detect_bench = bench.add_parser(
        "detect", help="ms/frame: MTCNN vs facenet-pytorch's detect_face, and YuNet vs MTCNN"
    )
    detect_bench.add_argument(
        "--json", type=writable_json, default="bench-results/detect.json", help="results JSON"
    )
    detect_bench.add_argument(
        "--repeats", type=positive_int, default=5, help="timed passes per configuration"
    )
    detect_bench.set_defaults(handler=_cmd_bench_detect)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
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
    return EXIT_USAGE if failures else 0


def _cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    if args.docs:
        from vigil.config.docs import render_markdown

        print(render_markdown(), end="")
        return 0
    print(settings.redacted_json())
    return 0


def _cmd_bench_lfw(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.lfw import run_lfw_bench

    result = run_lfw_bench(settings, args.data, args.json, use_cache=not args.no_cache, metric=args.metric)
    print(result.summary)
    return 0


def _cmd_bench_identify(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.bench_identify import run_identify_bench

    result = run_identify_bench(
        settings,
        args.data,
        args.json,
        use_cache=not args.no_cache,
        calibration_out=args.calibration_out,
        target_fpirs=tuple(args.target_fpir),
    )
    print(result.summary)
    return 0


def _cmd_bench_fusion(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.bench_fusion import run_fusion_bench

    result = run_fusion_bench(settings, args.data, args.json, args.other_backend, use_cache=not args.no_cache)
    print(result.summary)
    return 0


def _cmd_bench_embed(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.bench_embed import make_bench_chips, make_sface_chips, run_embed_bench
    from trainer.report import write_json
    from vigil.files import write_text_atomically

    chips = make_bench_chips()
    result = run_embed_bench(
        chips,
        repeats=args.repeats,
        weights_path=settings.embedder.weights_path,
        sface_chips=make_sface_chips(settings.model_files_dir, count=len(chips)),
        models_dir=settings.model_files_dir,
    )
    write_json(args.json, result.to_dict())
    markdown = result.to_markdown()
    write_text_atomically(args.json.with_suffix(".md"), markdown)
    print(markdown)
    print(f"reports: {args.json}, {args.json.with_suffix('.md')}")
    return 0


def _cmd_bench_detect(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.bench_detect import run_detect_bench
    from trainer.report import write_json
    from vigil.files import write_text_atomically

    result = run_detect_bench(settings.model_files_dir, repeats=args.repeats)
    write_json(args.json, result.to_dict())
    markdown = result.to_markdown()
    write_text_atomically(args.json.with_suffix(".md"), markdown)
    print(markdown)
    print(f"reports: {args.json}, {args.json.with_suffix('.md')}")
    return 0


def _cmd_bench_index(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.bench import run_index_bench, to_dict, to_markdown
    from trainer.report import write_json
    from vigil.files import write_text_atomically

    rows = run_index_bench(args.size, args.dim, queries=args.queries, probes=args.probes)
    write_json(args.json, to_dict(rows))  # type: ignore[arg-type]
    markdown = to_markdown(rows)
    write_text_atomically(args.json.with_suffix(".md"), markdown)
    print(markdown)
    print(f"reports: {args.json}, {args.json.with_suffix('.md')}")
    return 0


def _open_gallery(settings: Settings) -> Gallery:
    from indexer.gallery import Gallery
    from vigil.streams import connect_redis

    return Gallery(connect_redis(settings.redis, settings.home))


def _image_files(paths: Sequence[Path]) -> list[Path]:
    """Expand folders into the image files they hold (sorted); files pass through."""
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        else:
            files.append(path)
    return files


def _cmd_enroll(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from indexer.enroll import enroll_person
    from indexer.identify import Identifier
    from indexer.sources import SourceStore
    from vigil.errors import GalleryError
    from vigil.models.pipeline import FacePipeline

    if args.from_dir is not None:
        if args.name or args.images:
            raise GalleryError("give either NAME IMAGE... or --from-dir DIR, not both")
        if not args.from_dir.is_dir():
            raise GalleryError(f"{args.from_dir} is not a folder")
        people = {
            folder.name: _image_files([folder])
            for folder in sorted(args.from_dir.iterdir())
            if folder.is_dir()
        }
        if not people:
            raise GalleryError(f"{args.from_dir} has no sub-folders (expected one per person)")
    else:
        if not args.name or not args.images:
            raise GalleryError("usage: vigil enroll NAME IMAGE... (or vigil enroll --from-dir DIR)")
        people = {args.name: _image_files(args.images)}
    identifier = Identifier.from_settings(
        _open_gallery(settings), FacePipeline.from_settings(settings), settings
    )
    sources = SourceStore.from_settings(settings) if settings.indexer.keep_sources else None
    failures = 0
    for name, photos in tqdm(people.items(), desc="enrolling", unit="person", disable=len(people) < 2):
        if not photos:
            print(f"vigil: error: {name}: no photos found", file=sys.stderr)
            failures += 1
            continue
        try:
            report = enroll_person(
                identifier, settings.indexer, name, photos, add_to_existing=args.add, sources=sources
            )
        except VigilError as exc:
            print(f"vigil: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"enrolled {name}: {len(report.accepted)} photo(s) accepted, {len(report.rejected)} rejected")
        for rejected in report.rejected:
            print(f"  rejected {rejected.path}: {rejected.reason}")
        for warning in report.warnings:
            print(f"  warning: {warning}")
    return EXIT_USAGE if failures else 0


def _cmd_people_list(args: argparse.Namespace, settings: Settings) -> int:
    gallery = _open_gallery(settings)
    identities = gallery.list_identities()
    spaces = gallery.templates_by_space()
    for identity in identities:
        counts = spaces.of(identity.identity_id)
        print(f"{identity.name}\t{sum(counts.values())} template(s)\t{_models_text(counts)}")
    print(f"{len(identities)} people enrolled")
    return 0


def _models_text(counts: dict[str, int]) -> str:
    """A person's models: ``dlib_resnet_v1+flip (2), sface_2021dec+flip (1)``, or ``no templates``."""
    return ", ".join(f"{version} ({count})" for version, count in sorted(counts.items())) or "no templates"


def _find_person(gallery: Gallery, name: str) -> Identity:
    return gallery.get_by_name(name)


def _cmd_people_show(args: argparse.Namespace, settings: Settings) -> int:
    gallery = _open_gallery(settings)
    identity = _find_person(gallery, args.name)
    print(f"{identity.name} (id {identity.identity_id}), enrolled {identity.created_at}")
    print(f"  templates per model: {_models_text(gallery.templates_by_space().of(identity.identity_id))}")
    for template in gallery.identity_templates(identity.identity_id):
        print(
            f"  template {template.template_id}: {template.embedder_version}, from {template.source or '?'}, "
            f"quality {template.quality:.1f}"
        )
    return 0


def _cmd_people_rename(args: argparse.Namespace, settings: Settings) -> int:
    gallery = _open_gallery(settings)
    gallery.rename(_find_person(gallery, args.name).identity_id, args.new_name)
    print(f"renamed {args.name} to {args.new_name}")
    return 0


def _cmd_people_delete(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.erase import StreamKeys, erase_person
    from indexer.sources import SourceStore

    gallery = _open_gallery(settings)
    erased = erase_person(
        gallery,
        SourceStore.from_settings(settings),
        _find_person(gallery, args.name).identity_id,
        StreamKeys.from_settings(settings),
    )
    print(
        f"deleted {erased.name}: the person, {erased.templates} template(s) and "
        f"{erased.photos} kept photo(s) are erased; running services drop them on their next search"
    )
    rewritten = ", ".join(erased.rewritten) or "none (no persistence)"
    print(
        f"  also erased: {erased.negatives} negative(s), {erased.feedback} feedback record(s), "
        f"{erased.clusters} unknown cluster(s), {erased.events} event(s), {erased.results} frame result(s), "
        f"{erased.keys} other key(s); Redis files rewritten: {rewritten}"
    )
    return 0


def _cmd_identify(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.identify import Identifier
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    identifier = Identifier.from_settings(_open_gallery(settings), pipeline, settings)
    failures = 0
    for path, results in _identify_images(identifier, args.images):
        if results is None:
            failures += 1
        elif args.json:
            print(json.dumps({"image": str(path), "faces": [_identity_fields(r) for r in results]}))
        else:
            print(f"{path}: {len(results)} face(s)")
            for r in results:
                print(_identity_line(r))
    return EXIT_USAGE if failures else 0


def _cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np

    from indexer.identify import Identifier
    from vigil.models.attributes import load_attribute_head, predict_attributes
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    head, head_source = load_attribute_head(settings.home, pipeline.embedder.version)
    logger.info("attribute head: %s", head_source)
    identifier = Identifier.from_settings(_open_gallery(settings), pipeline, settings)
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
            faces = [
                {**_identity_fields(r), **face.to_dict()} for r, face in zip(results, attributes, strict=True)
            ]
            print(json.dumps({"image": str(path), "faces": faces}))
        else:
            print(f"{path}: {len(results)} face(s)")
            for r, face in zip(results, attributes, strict=True):
                print(
                    f"{_identity_line(r)}: age {face.age:.0f} ({face.age_range[0]}-{face.age_range[1]}), "
                    f"{face.gender} ({face.gender_confidence:.0%})"
                )
    return EXIT_USAGE if failures else 0


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


def _identity_fields(result: Identification) -> dict[str, object]:
    """One face's identity as ``--json`` prints it."""
    score = result.decision.score
    return {
        "name": result.name,
        "identity_id": result.decision.identity_id,
        "score": None if math.isnan(score) else round(score, 4),
        "box_xyxy": [round(float(v), 1) for v in result.face.box_xyxy],
    }


def _identity_line(result: Identification) -> str:
    """One face's identity as the text output prints it."""
    box = ", ".join(f"{v:.0f}" for v in result.face.box_xyxy)
    return f"  {result.label} (similarity {result.decision.score:.3f}) at ({box})"


def _cmd_gallery_export(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.backup import export_gallery

    summary = export_gallery(_open_gallery(settings), args.file)
    print(f"exported {summary.describe()} to {args.file}")
    return 0


def _cmd_gallery_reembed(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from indexer.reembed import reembed_gallery
    from indexer.sources import SourceStore
    from vigil.models.pipeline import FacePipeline

    gallery = _open_gallery(settings)
    pipeline = FacePipeline.from_settings(settings)
    with tqdm(total=len(gallery.list_identities()), desc="re-embedding", unit="person") as progress:
        report = reembed_gallery(
            gallery,
            SourceStore.from_settings(settings),
            pipeline,
            settings.indexer,
            lambda: progress.update(),
        )
    print(
        f"{report.added} template(s) added for {pipeline.embedder.version}, {report.up_to_date} already there"
    )
    for photo, reason in report.failed:
        print(f"  failed {photo}: {reason}")
    if report.without_photo:
        print(
            f"  {report.without_photo} template(s) have no kept photo "
            "(set indexer.keep_sources to keep photos from now on)"
        )
    if report.to_reenrol:
        print(
            f"  {len(report.to_reenrol)} people could not be moved to {pipeline.embedder.version} "
            "(no usable kept photo), for re-enrolment:"
        )
        for name in report.to_reenrol:
            print(f"    {name}")
    if report.orphans_removed:
        print(f"  removed {report.orphans_removed} kept photo(s) of people no longer enrolled")
    return EXIT_USAGE if report.failed else 0


def _cmd_gallery_import(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.backup import import_gallery

    summary = import_gallery(_open_gallery(settings), args.file)
    print(f"imported {summary.describe()} from {args.file}")
    return 0
