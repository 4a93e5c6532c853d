"""``vigil bench``: accuracy and speed benchmarks, each writing JSON and Markdown reports.

Each handler checks its arguments, calls the benchmark's function in ``trainer``, ``streamer``
or ``indexer`` and prints its summary. The benchmarks' defaults are imported when the parser is
built (those modules do not load torch); the benchmarks themselves, and torch, only when one runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.arguments import cosine, cosine_margin, positive_int, probability, writable_json
from vigil.cli.train import add_common_attribute_arguments
from vigil.config import Settings
from vigil.errors import DatasetError

if TYPE_CHECKING:
    from trainer.report import JsonValue

DEFAULT_LFW_DIR = Path("../shared/data/lfw")
DEFAULT_POSE_PHOTOS = Path("../shared/data/people/face_recognition")
# The photos of DEFAULT_POSE_PHOTOS whose subject faces the camera (by eye, within about 15°).
FRONTAL_PHOTOS = frozenset(
    {"obama.jpg", "obama-480p.jpg", "biden.jpg", "lin-manuel-miranda.png", "alex-lacamoire.png"}
)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` and its benchmarks."""
    bench = commands.add_parser("bench", help="accuracy and speed benchmarks").add_subparsers(
        title="benchmarks", metavar="BENCHMARK", required=True
    )
    add_stream_bench(bench)
    add_cameras_bench(bench)
    add_faults_bench(bench)
    add_pairs_bench(bench)
    add_attributes_bench(bench)
    add_pose_bench(bench)
    add_api_bench(bench)
    lfw = bench.add_parser("lfw", help="LFW 10-fold verification accuracy (View 2, pairs.txt)")
    lfw.add_argument("--data", type=Path, default=DEFAULT_LFW_DIR, help="LFW folder with pairs.txt")
    lfw.add_argument("--json", type=writable_json, default="bench-results/lfw.json", help="results JSON")
    lfw.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    lfw.add_argument("--metric", choices=["euclidean", "cosine"], default="cosine", help="pair score")
    lfw.set_defaults(handler=cmd_bench_lfw)

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
    identify_bench.set_defaults(handler=cmd_bench_identify)

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
    fusion.set_defaults(handler=cmd_bench_fusion)

    embed = bench.add_parser(
        "embed", help="embedder faces/s (dlib ResNet, SFace) vs dlib's and OpenCV's own implementations"
    )
    embed.add_argument("--json", type=writable_json, default="bench-results/embed.json", help="results JSON")
    embed.add_argument("--repeats", type=positive_int, default=5, help="timed passes per configuration")
    embed.set_defaults(handler=cmd_bench_embed)

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
    index_bench.set_defaults(handler=cmd_bench_index)

    detect_bench = bench.add_parser(
        "detect", help="ms/frame: MTCNN vs facenet-pytorch's detect_face, and YuNet vs MTCNN"
    )
    detect_bench.add_argument(
        "--json", type=writable_json, default="bench-results/detect.json", help="results JSON"
    )
    detect_bench.add_argument(
        "--repeats", type=positive_int, default=5, help="timed passes per configuration"
    )
    detect_bench.set_defaults(handler=cmd_bench_detect)


def add_stream_bench(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stream`` to the ``vigil bench`` sub-commands."""
    from streamer.bench_stream import DEFAULT_JSON

    stream = bench.add_parser(
        "stream", help="frames/s and capture→event latency on a clip, vs the face_recognition recipe"
    )
    _add_clip_arguments(stream)
    stream.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results JSON, Markdown beside it")
    stream.add_argument("--skip-latency", action="store_true", help="do not run the service for latency")
    stream.set_defaults(handler=cmd_bench_stream)


def add_cameras_bench(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cameras`` to the ``vigil bench`` sub-commands."""
    from streamer.bench_cameras import DEFAULT_CAMERAS, DEFAULT_HEIGHT, DEFAULT_JSON, DEFAULT_TICKS

    parser = bench.add_parser(
        "cameras", help="frames/s of one worker (GPU when present) on many concurrent camera streams"
    )
    _add_clip_arguments(parser)
    parser.add_argument(
        "--cameras", type=int, default=DEFAULT_CAMERAS, help="concurrent streams (default: 8)"
    )
    parser.add_argument(
        "--height", type=int, default=DEFAULT_HEIGHT, help="frame height in pixels (default: 720)"
    )
    parser.add_argument("--ticks", type=int, default=DEFAULT_TICKS, help="timed batches (default: 40)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results JSON, Markdown beside it")
    parser.set_defaults(handler=cmd_bench_cameras)


def add_faults_bench(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``faults`` to the ``vigil bench`` sub-commands."""
    from streamer.bench_faults import DEFAULT_JSON, DEFAULT_LFW_DIR, PROFILES, REORDER_WINDOW_MS

    faults = bench.add_parser(
        "faults", help="events lost or doubled while processes, Redis and entries fail (the real service)"
    )
    _add_clip_arguments(faults)
    faults.add_argument(
        "--second-clip", type=Path, default=None, help="the second camera's video (default: --clip again)"
    )
    faults.add_argument("--lfw", type=Path, default=DEFAULT_LFW_DIR, help="LFW people folder (enrolments)")
    faults.add_argument("--seed", type=int, default=0, help="seeds the faults' order, moments and victims")
    faults.add_argument("--profile", choices=sorted(PROFILES), default="full", help="which faults")
    faults.add_argument("--workers", type=int, default=2, help="worker processes of the service")
    faults.add_argument(
        "--reorder-window-ms",
        type=int,
        default=REORDER_WINDOW_MS,
        help="the service's streamer.tracker.reorder_window_ms (default: %(default)s)",
    )
    faults.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results JSON, Markdown beside it")
    faults.set_defaults(handler=cmd_bench_faults)


def add_pairs_bench(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pairs`` to the ``vigil bench`` sub-commands."""
    from trainer.bench_pairs import DEFAULT_AGING_JSON, DEFAULT_JSON, DEFAULT_METRIC
    from trainer.pairs import DEFAULT_FOLDS

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
        type=cosine,
        help="template aging: match threshold (cosine) instead of the calibrated one for the gallery's size",
    )
    parser.add_argument(
        "--margin", type=cosine_margin, help="template aging: match margin instead of the calibrated one"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help=f"results JSON, Markdown (and for pairs a PNG) beside it (default: {DEFAULT_JSON}, "
        f"or {DEFAULT_AGING_JSON} with --template-aging)",
    )
    parser.add_argument("--no-cache", action="store_true", help="recompute embeddings even if cached")
    parser.set_defaults(handler=cmd_bench_pairs)


def add_attributes_bench(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``attributes`` to the ``vigil bench`` sub-commands."""
    from trainer.train_attributes import DEFAULT_BENCH_JSON, DEFAULT_DATASET

    benchmark = bench.add_parser(
        "attributes", help="age MAE and gender accuracy of a head trained on a held-out split"
    )
    benchmark.add_argument(
        "--dataset", type=Path, default=DEFAULT_DATASET, help="UTKFace-named faces (default: %(default)s)"
    )
    add_common_attribute_arguments(benchmark)
    benchmark.add_argument(
        "--json", type=writable_json, default=DEFAULT_BENCH_JSON, help="results JSON (Markdown beside it)"
    )
    benchmark.set_defaults(handler=cmd_bench_attributes)


def add_pose_bench(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pose`` to the ``vigil bench`` sub-commands."""
    benchmark = bench.add_parser(
        "pose", help="head-pose error: synthetic rotations, frontal photos, mirrored LFW faces"
    )
    benchmark.add_argument(
        "--people",
        type=Path,
        default=DEFAULT_POSE_PHOTOS,
        help="folder of frontal photos (default: %(default)s)",
    )
    benchmark.add_argument("--data", type=Path, default=DEFAULT_LFW_DIR, help="LFW folder")
    benchmark.add_argument(
        "--lfw-images", type=int, default=200, help="LFW images for the mirror check (0: none)"
    )
    benchmark.add_argument(
        "--json", type=writable_json, default="bench-results/pose.json", help="results JSON (and Markdown)"
    )
    benchmark.set_defaults(handler=cmd_bench_pose)


def cmd_bench_pose(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.enroll import image_files
    from trainer.bench_pose import run_pose_bench
    from vigil.models.registry import create_detector

    photos = [path for path in image_files([args.people]) if path.name in FRONTAL_PHOTOS]
    detector = create_detector(settings.detector, settings.model_files_dir)
    lfw = args.data if args.lfw_images > 0 and args.data.is_dir() else None
    result = run_pose_bench(detector, photos, lfw, args.lfw_images)
    _write_reports(args.json, result.to_dict(), result.to_markdown())
    return 0


def cmd_bench_stream(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench stream``: check the inputs, run, write the reports, print the summary."""
    from streamer.bench_setup import check_data, write_reports
    from streamer.bench_stream import run_stream_bench

    check_data(args.clip, args.people)
    args.json.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    result = run_stream_bench(args.clip, args.people, settings, measure_latency=not args.skip_latency)
    markdown_path = write_reports(result, args.json)
    print(result.to_markdown())
    print(f"reports: {args.json}, {markdown_path}")
    return 0


def cmd_bench_cameras(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench cameras``: check the inputs, run, write the reports, print the summary."""
    from streamer.bench_cameras import run_cameras_bench
    from streamer.bench_setup import check_data, write_reports

    check_data(args.clip, args.people)
    args.json.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    result = run_cameras_bench(
        args.clip, args.people, settings, cameras=args.cameras, height=args.height, ticks=args.ticks
    )
    markdown_path = write_reports(result, args.json)
    print(result.to_markdown())
    print(f"reports: {args.json}, {markdown_path}")
    return 0


def cmd_bench_faults(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench faults``: run, write the reports, print the summary; 1 when a target is missed."""
    from streamer.bench_faults import run_fault_bench
    from streamer.bench_setup import write_reports

    args.json.parent.mkdir(parents=True, exist_ok=True)
    clips = [args.clip, args.second_clip or args.clip]
    result = run_fault_bench(
        clips,
        args.people,
        args.lfw,
        settings,
        seed=args.seed,
        profile=args.profile,
        workers=args.workers,
        reorder_window_ms=args.reorder_window_ms,
        config=args.config,
    )
    markdown_path = write_reports(result, args.json)
    print(result.to_markdown())
    print(f"reports: {args.json}, {markdown_path}")
    return 1 if result.events_lost or result.duplicate_events or result.gallery_writes_lost else 0


def cmd_bench_pairs(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench pairs``: check the arguments, run, print the summary.

    Raises:
        DatasetError: Options of the other mode were given, the pairs file or probe list or
            their images are missing or malformed, or the pairs cannot be cross-validated.
    """
    from trainer.bench_pairs import run_pairs_list_bench, run_template_aging_bench

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
        result = run_template_aging_bench(
            settings,
            args.template_aging,
            args.images,
            args.json,
            threshold=args.threshold,
            margin=args.margin,
            use_cache=not args.no_cache,
        )
    else:
        result = run_pairs_list_bench(
            settings,
            args.pairs,
            args.images,
            args.json,
            folds=args.folds,
            metric=args.metric,
            use_cache=not args.no_cache,
        )
    print(result.summary)
    return 0


def cmd_bench_attributes(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench attributes``: train and evaluate; write the JSON and Markdown reports."""
    from trainer.train_attributes import (
        DEFAULT_EPOCHS,
        DEFAULT_TAIL_EPOCHS,
        TrainAttributesOptions,
        attributes_markdown,
        run_attributes_bench,
    )

    options = TrainAttributesOptions(
        dataset=args.dataset,
        epochs=args.epochs or (DEFAULT_TAIL_EPOCHS if args.fine_tune_blocks else DEFAULT_EPOCHS),
        seed=args.seed,
        limit=args.limit,
        fine_tune_blocks=args.fine_tune_blocks or 0,
    )
    figures = run_attributes_bench(settings, options)
    _write_reports(args.json, figures, attributes_markdown(figures))
    return 0


def cmd_bench_lfw(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.lfw import run_lfw_bench

    result = run_lfw_bench(settings, args.data, args.json, use_cache=not args.no_cache, metric=args.metric)
    print(result.summary)
    return 0


def cmd_bench_identify(args: argparse.Namespace, settings: Settings) -> int:
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


def cmd_bench_fusion(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.bench_fusion import run_fusion_bench

    result = run_fusion_bench(settings, args.data, args.json, args.other_backend, use_cache=not args.no_cache)
    print(result.summary)
    return 0


def cmd_bench_embed(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.bench_embed import make_bench_chips, make_sface_chips, run_embed_bench

    chips = make_bench_chips()
    result = run_embed_bench(
        chips,
        repeats=args.repeats,
        weights_path=settings.embedder.weights_path,
        sface_chips=make_sface_chips(settings.model_files_dir, count=len(chips)),
        models_dir=settings.model_files_dir,
    )
    _write_reports(args.json, result.to_dict(), result.to_markdown())
    return 0


def cmd_bench_detect(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.bench_detect import run_detect_bench

    result = run_detect_bench(settings.model_files_dir, repeats=args.repeats)
    _write_reports(args.json, result.to_dict(), result.to_markdown())
    return 0


def cmd_bench_index(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.bench import run_index_bench, to_dict, to_markdown

    rows = run_index_bench(args.size, args.dim, queries=args.queries, probes=args.probes)
    _write_reports(args.json, to_dict(rows), to_markdown(rows))  # type: ignore[arg-type]
    return 0


# ----------------------------------------------------------------------------- private helpers


def _write_reports(json_path: Path, figures: Mapping[str, JsonValue], markdown: str) -> None:
    """Write the JSON report and the Markdown one beside it (atomically), then print the Markdown
    and where both are."""
    from trainer.report import write_json
    from vigil.files import write_text_atomically

    write_json(json_path, figures)
    markdown_path = json_path.with_suffix(".md")
    write_text_atomically(markdown_path, markdown)
    print(markdown)
    print(f"reports: {json_path}, {markdown_path}")


def _add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """``--clip`` and ``--people``, as the streamer's benchmarks take them."""
    from streamer.bench_setup import DEFAULT_CLIP, DEFAULT_PEOPLE_DIR, PEOPLE

    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video file (default: %(default)s)")
    parser.add_argument(
        "--people", type=Path, default=DEFAULT_PEOPLE_DIR, help=f"folder with {', '.join(PEOPLE.values())}"
    )


def _fold_count(text: str) -> int:
    """``--folds``: an integer of at least ``trainer.bench_pairs.MIN_FOLDS``."""
    from trainer.bench_pairs import MIN_FOLDS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < MIN_FOLDS:
        raise argparse.ArgumentTypeError(f"need at least {MIN_FOLDS} folds for cross-validation, got {value}")
    return value


def add_api_bench(bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = bench.add_parser(
        "api", help="HTTP API: identify requests/s and latency per client count; live events/s to subscribers"
    )
    api.add_argument(
        "--clients", type=positive_int, nargs="+", default=[1, 8], help="concurrent identify clients"
    )
    api.add_argument("--duration", type=positive_int, default=20, help="seconds per client count")
    api.add_argument("--subscribers", type=positive_int, default=50, help="live event subscribers")
    api.add_argument("--events", type=positive_int, default=500, help="events published to them")
    api.add_argument("--json", type=writable_json, default="bench-results/api.json", help="results JSON")
    api.set_defaults(handler=cmd_bench_api)


def cmd_bench_api(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench api``: run, write the reports, print the summary."""
    from streamer.bench_setup import write_reports
    from vigil.api.bench import run_api_bench

    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = run_api_bench(
        settings,
        clients=args.clients,
        duration_s=float(args.duration),
        subscribers=args.subscribers,
        events=args.events,
    )
    markdown_path = write_reports(result, args.json)
    print(result.to_markdown())
    print(f"reports: {args.json}, {markdown_path}")
    return 0
