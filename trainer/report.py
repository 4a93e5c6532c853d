"""Benchmark report outputs: ROC, DET and score plots (PNG), Markdown summaries and atomic JSON files.

Plots use matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), imported inside the
plot functions, so importing this module touches no global pyplot state or backend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from vigil.files import write_atomically
from vigil.typing import FloatArray

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

JsonValue: TypeAlias = "bool | int | float | str | Sequence[JsonValue] | Mapping[str, JsonValue] | None"

"""Permissions of report files that did not exist before."""

ROC_FAR_MARKERS = (1e-3, 1e-2)
"""FARs marked with dotted vertical lines on ROC plots (the operating points reported)."""

_SUMMARY_ROWS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("auc", "AUC", lambda value: f"{value:.4f}"),
    ("eer", "EER", lambda value: f"{value:.2%}"),
    ("tar_at_far_1e-3", "TAR @ FAR=1e-3", lambda value: f"{value:.2%}"),
    ("tar_at_far_1e-2", "TAR @ FAR=1e-2", lambda value: f"{value:.2%}"),
    ("precision", "Precision", lambda value: f"{value:.4f}"),
    ("recall", "Recall", lambda value: f"{value:.4f}"),
    ("f1", "F1", lambda value: f"{value:.4f}"),
    ("threshold", "Threshold (mean of folds)", lambda value: f"{value:.4f}"),
    ("eer_threshold", "Threshold at EER", lambda value: f"{value:.4f}"),
)
"""Scalar keys of a verification summary: (key, Markdown label, formatter)."""

DET_TICKS = (1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8, 0.95)
"""Error rates labelled on DET axes (normal-deviate scale, as in Martin et al. 1997)."""


def plot_roc(
    far: FloatArray,
    tar: FloatArray,
    path: Path,
    label: str,
    *,
    title: str = "ROC",
    far_min: float | None = None,
    dpi: int = 120,
    axis_labels: tuple[str, str] = ("False accept rate (FAR)", "True accept rate (TAR)"),
) -> None:
    """Write a ROC curve as a PNG with a logarithmic FAR axis.

    FAR values of 0 cannot sit on a log axis, so FAR is clipped below at ``far_min``.

    Args:
        far: ``(K,)`` non-decreasing false accept rates in ``[0, 1]``.
        tar: ``(K,)`` true accept rates at the same points.
        path: PNG file to write; parent folders are created and the file is replaced
            atomically.
        label: Legend entry for the curve (e.g. the model name).
        title: Plot title.
        far_min: Left end of the FAR axis; defaults to the smallest non-zero FAR (for LFW,
            1 / 3000 impostor pairs).
        dpi: Resolution of the PNG.
        axis_labels: x and y axis titles (e.g. FPIR and DIR for open-set identification).

    Raises:
        ValueError: ``far`` and ``tar`` differ in shape, are empty, or ``far`` has no
            non-zero value and no ``far_min`` is given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    far_64 = np.asarray(far, dtype=np.float64)
    tar_64 = np.asarray(tar, dtype=np.float64)
    if far_64.ndim != 1 or far_64.shape != tar_64.shape or far_64.size == 0:
        raise ValueError(
            f"far and tar must be non-empty 1-D arrays of one length, got {far_64.shape} and {tar_64.shape}"
        )
    if far_min is None:
        positive = far_64[far_64 > 0]
        if positive.size == 0:
            raise ValueError("far has no non-zero value; pass far_min to set the left end of the log axis")
        far_min = float(positive.min())
    if far_min <= 0:
        raise ValueError(f"far_min must be positive for a log axis, got {far_min}")

    figure = Figure(figsize=(6.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(np.maximum(far_64, far_min), tar_64, label=label)
    for marker in ROC_FAR_MARKERS:
        if marker >= far_min:
            axes.axvline(marker, color="grey", linestyle=":", linewidth=1.0)
    axes.set_xscale("log")
    axes.set_xlim(far_min, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel(axis_labels[0])
    axes.set_ylabel(axis_labels[1])
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    _save_png(figure, path, dpi)


def plot_det(
    far: FloatArray,
    frr: FloatArray,
    path: Path,
    label: str,
    *,
    title: str = "DET",
    rate_min: float = 1e-5,
    operating_far: float | None = None,
    dpi: int = 120,
) -> None:
    """Write a DET curve (FRR against FAR, both on normal-deviate axes) as a PNG.

    Rates are clipped to ``[rate_min, 1 - rate_min]`` so that 0 and 1 stay on the axes.

    Args:
        far: ``(K,)`` false accept rates in ``[0, 1]``.
        frr: ``(K,)`` false reject rates (``1 - TAR``) at the same points.
        path: PNG file to write; replaced atomically.
        label: Legend entry for the curve.
        title: Plot title.
        rate_min: Smallest rate shown (e.g. ``1 / impostor pairs``).
        operating_far: FAR of the chosen threshold, marked with a dotted line.
        dpi: Resolution of the PNG.

    Raises:
        ValueError: ``far`` and ``frr`` differ in shape or are empty, or ``rate_min`` is not
            in ``(0, 0.5)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    far_64 = np.asarray(far, dtype=np.float64)
    frr_64 = np.asarray(frr, dtype=np.float64)
    if far_64.ndim != 1 or far_64.shape != frr_64.shape or far_64.size == 0:
        raise ValueError(
            f"far and frr must be non-empty 1-D arrays of one length, got {far_64.shape} and {frr_64.shape}"
        )
    if not 0.0 < rate_min < 0.5:
        raise ValueError(f"rate_min must be in (0, 0.5), got {rate_min}")

    inverse_cdf = NormalDist().inv_cdf

    def deviate(rates: FloatArray) -> FloatArray:
        clipped = np.clip(rates, rate_min, 1.0 - rate_min)
        return np.array([inverse_cdf(float(rate)) for rate in clipped], dtype=np.float64)

    figure = Figure(figsize=(6.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(deviate(far_64), deviate(frr_64), label=label)
    if operating_far is not None:
        axes.axvline(float(deviate(np.array([operating_far]))[0]), color="grey", linestyle=":", linewidth=1.0)
    ticks = [tick for tick in DET_TICKS if rate_min <= tick <= 1.0 - rate_min]
    positions = deviate(np.array(ticks))
    names = [f"{tick:.0e}" if tick < 0.01 else f"{tick:.0%}" for tick in ticks]
    axes.set_xticks(positions, names)
    axes.set_yticks(positions, names)
    limits = deviate(np.array([rate_min, 0.5]))
    axes.set_xlim(*limits)
    axes.set_ylim(*limits)
    axes.set_xlabel("False accept rate (FAR)")
    axes.set_ylabel("False reject rate (FRR)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right")
    _save_png(figure, path, dpi)


def plot_score_histograms(
    genuine: FloatArray,
    impostor: FloatArray,
    path: Path,
    *,
    threshold: float | None = None,
    title: str = "Scores",
    xlabel: str = "Cosine similarity",
    bins: int = 100,
    dpi: int = 120,
) -> None:
    """Write the genuine and impostor score distributions as overlaid density histograms.

    The density axis is logarithmic, so the tails where the two overlap (where the
    threshold sits) are visible next to the bulk.

    Args:
        genuine: ``(G,)`` scores of genuine pairs, finite.
        impostor: ``(I,)`` scores of impostor pairs, finite.
        path: PNG file to write; replaced atomically.
        threshold: Marked with a vertical line when given.
        title: Plot title.
        xlabel: x axis title.
        bins: Histogram bins over the range of both score sets.
        dpi: Resolution of the PNG.

    Raises:
        ValueError: Either score set is empty.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    genuine_64 = np.asarray(genuine, dtype=np.float64)
    impostor_64 = np.asarray(impostor, dtype=np.float64)
    if genuine_64.size == 0 or impostor_64.size == 0:
        raise ValueError("need genuine and impostor scores to plot their distributions")
    edges = np.histogram_bin_edges(np.concatenate([genuine_64, impostor_64]), bins=bins)
    figure = Figure(figsize=(6.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    edge_list = edges.tolist()
    axes.hist(impostor_64, bins=edge_list, density=True, alpha=0.5, label=f"impostor ({impostor_64.size:,})")
    axes.hist(genuine_64, bins=edge_list, density=True, alpha=0.5, label=f"genuine ({genuine_64.size:,})")
    if threshold is not None:
        axes.axvline(
            threshold, color="black", linestyle="--", linewidth=1.0, label=f"threshold {threshold:.4f}"
        )
    axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("Density")
    axes.set_title(title)
    axes.legend(loc="upper left")
    _save_png(figure, path, dpi)


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str] = ("Metric", "Value")) -> str:
    """Render rows as a GitHub-flavoured Markdown table: a name column, then right-aligned values.

    Args:
        rows: ``(name, value, ...)`` cells, already formatted, as many as ``header`` has.
            ``|`` is escaped.
        header: The column titles (two or more).

    Returns:
        The table, one line per row plus header and separator, ending in a newline.

    Raises:
        ValueError: A row has a different number of cells than ``header``.

    Example:
        >>> print(markdown_table([("AUC", "0.9950")]), end="")
        | Metric | Value |
        | --- | ---: |
        | AUC | 0.9950 |
    """
    widths = {len(row) for row in rows} - {len(header)}
    if widths:
        raise ValueError(f"the header has {len(header)} columns, some rows have {sorted(widths)}")
    lines = [_table_row(header), "| --- |" + " ---: |" * (len(header) - 1)]
    lines.extend(_table_row(row) for row in rows)
    return "\n".join(lines) + "\n"


def verification_markdown(summary: Mapping[str, JsonValue], title: str = "Face verification") -> str:
    """Render a verification summary (``VerificationResult.to_dict()``) as Markdown.

    Known keys that are missing are left out, so partial summaries render too.

    Args:
        summary: Keys as produced by ``trainer.metrics.VerificationResult.to_dict``.
        title: Heading of the section.

    Returns:
        A Markdown section: heading, metric table and, when present, a per-fold table.
    """
    rows: list[tuple[str, str]] = []
    if "pairs" in summary:
        rows.append(("Pairs", str(summary["pairs"])))
    if "accuracy_mean" in summary:
        accuracy = f"{_as_float(summary['accuracy_mean']):.2%}"
        if "accuracy_std" in summary:
            accuracy += f" ± {_as_float(summary['accuracy_std']):.2%}"
        rows.append(("Accuracy (mean ± std over folds)", accuracy))
    rows.extend(
        (label, formatter(_as_float(summary[key])))
        for key, label, formatter in _SUMMARY_ROWS
        if key in summary
    )
    sections = [f"## {title}\n", markdown_table(rows)]

    accuracies = summary.get("fold_accuracies")
    thresholds = summary.get("fold_thresholds")
    if isinstance(accuracies, Sequence) and isinstance(thresholds, Sequence):
        fold_rows = [
            (str(fold), f"{_as_float(accuracy):.2%} at {_as_float(threshold):.4f}")
            for fold, (accuracy, threshold) in enumerate(zip(accuracies, thresholds, strict=True))
        ]
        sections.append(markdown_table(fold_rows, header=("Fold", "Accuracy at threshold")))
    return "\n".join(sections)


def write_json(path: Path, data: Mapping[str, JsonValue]) -> None:
    """Write ``data`` as indented JSON, atomically (temp file in the same folder + ``os.replace``).

    Readers see either the old file or the complete new one, never a partial write.

    Args:
        path: Destination; parent folders are created.
        data: JSON-serialisable mapping. NaN and infinity are rejected (strict JSON).

    Raises:
        ValueError: ``data`` holds NaN or infinity; nothing is written.
        TypeError: ``data`` holds a value JSON cannot encode; nothing is written.
    """
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"

    def save(temporary: Path) -> None:
        temporary.write_text(text, encoding="utf-8")

    write_atomically(path, save)
    logger.info("wrote %s", path)


def _save_png(figure: Figure, path: Path, dpi: int) -> None:
    """Write ``figure`` to ``path`` as a PNG, atomically."""

    def save(temporary: Path) -> None:
        figure.savefig(temporary, format="png", dpi=dpi)

    write_atomically(path, save)
    logger.info("wrote plot %s", path)


def _table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_escape_cell(cell) for cell in cells) + " |"


def _escape_cell(text: str) -> str:
    """Make ``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _as_float(value: JsonValue) -> float:
    """A summary value as a float, rejecting non-numbers with a clear message."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number in the verification summary, got {value!r}")
    return float(value)
