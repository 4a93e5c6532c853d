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

The benchmarks (and torch) load when they run, not when this module is imported; the
command line (``vigil.cli.bench``) imports it for its defaults.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.pairs import DEFAULT_FOLDS, read_pairs
from trainer.probe_list import read_probe_list
from vigil.config import Settings

if TYPE_CHECKING:
    from trainer.lfw import Metric, PairsBenchResult

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("bench-results/pairs.json")
DEFAULT_AGING_JSON = Path("bench-results/template-aging.json")
DEFAULT_METRIC: Metric = "cosine"  # embeddings carry direction only (the Embedder contract)
MIN_FOLDS = 2
"""Cross-validation needs a fold to hold out and at least one to choose the threshold on."""


def run_pairs_list_bench(
    settings: Settings,
    pairs_file: Path,
    images_dir: Path,
    json_path: Path | None = None,
    *,
    folds: int | None = None,
    metric: Metric | None = None,
    use_cache: bool = True,
) -> PairsBenchResult:
    """Read a pairs list, run the verification protocol on it and write the reports.

    Args:
        settings: Models and cache location.
        pairs_file: LFW ``pairs.txt`` or plain ``path_a path_b same [fold]`` lines.
        images_dir: The folder the list's relative image paths are relative to.
        json_path: Results JSON; the Markdown and a ROC PNG go beside it (default :data:`DEFAULT_JSON`).
        folds: Folds to deal the pairs into when the file gives none (default: ``DEFAULT_FOLDS``).
        metric: The pair score (default :data:`DEFAULT_METRIC`).
        use_cache: Whether to read and write the embedding cache.

    Raises:
        DatasetError: The pairs file or its images are missing or malformed, or the pairs
            cannot be cross-validated.
    """
    from trainer.lfw import run_pairs_bench  # loads torch: only when the benchmark runs

    pairs = read_pairs(pairs_file, images_dir, folds=folds or DEFAULT_FOLDS)
    json_path = json_path or DEFAULT_JSON
    json_path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    return run_pairs_bench(
        settings,
        pairs,
        images_dir,
        json_path,
        f"Pairs {pairs_file.name}",
        use_cache=use_cache,
        metric=metric or DEFAULT_METRIC,
        fallback="whole_image",
    )


def run_template_aging_bench(
    settings: Settings,
    probes_file: Path,
    images_dir: Path,
    json_path: Path | None = None,
    *,
    threshold: float | None = None,
    margin: float | None = None,
    use_cache: bool = True,
) -> PairsBenchResult:
    """Walk a chronological probe list with and without gallery updates and write the reports.

    Args:
        settings: Models, cache location and the decision rule.
        probes_file: ``NAME PATH`` lines, oldest first; each person's first line enrols them.
        images_dir: The folder the list's relative image paths are relative to.
        json_path: Results JSON; the Markdown goes beside it (default :data:`DEFAULT_AGING_JSON`).
        threshold: Match threshold (cosine) instead of the calibrated one for the gallery's size.
        margin: Match margin instead of the calibrated one.
        use_cache: Whether to read and write the embedding cache.

    Raises:
        DatasetError: The probe list or its photos are missing or malformed.
        CalibrationError: No rule in force for this embedder and no ``threshold``/``margin``.
    """
    from trainer.bench_aging import run_aging_bench  # loads torch: only when the benchmark runs

    probe_list = read_probe_list(probes_file, images_dir)
    json_path = json_path or DEFAULT_AGING_JSON
    json_path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after
    overrides = {
        key: value
        for key, value in (("match_threshold", threshold), ("match_margin", margin))
        if value is not None
    }
    indexer = settings.indexer.model_copy(update=overrides)
    return run_aging_bench(
        settings.model_copy(update={"indexer": indexer}),
        probe_list,
        images_dir,
        json_path,
        f"Template aging {probes_file.name}",
        use_cache=use_cache,
    )
