"""Facial expression for tracks: fer's mini-Xception on a track's best face crops.

Only cameras with ``expression`` in ``streamer.cameras[].analysis`` pay for it: their workers
attach the face crop (``face_crop_jpeg``) to every face, and the tracker asks once per track (at
its first ``recognized`` or ``unknown`` event) with up to ``tracking.EXPRESSION_FACES`` of its
best crops; their probabilities are averaged, as age and gender average the track's faces.
Missing weights leave the events' ``expression`` null, with one warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

from streamer.analysis import decode_jpeg
from streamer.events import EventExpression, ExpressionLabel

if TYPE_CHECKING:
    from vigil.models.expression import ExpressionModel

logger = logging.getLogger(__name__)


class TrackExpression:
    """The expression of a track's face crops (an ``ExpressionEstimate`` for the tracker).

    The model is loaded on first use; when it cannot be, events carry no expression and the
    reason is logged once.

    Example:
        >>> estimate = TrackExpression(settings.model_files_dir)
        >>> estimate([jpeg_1, jpeg_2]).label
        'happy'
    """

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self._model: ExpressionModel | None = None
        self._loaded = False

    def __call__(self, crops: list[bytes]) -> EventExpression | None:
        from vigil.models.expression import mean_probabilities, top_expression

        model = self._loaded_model()
        if model is None or not crops:
            return None
        found = [p for p in model.predict([decode_jpeg(jpeg) for jpeg in crops]) if p is not None]
        mean = mean_probabilities(found)
        if mean is None:
            return None
        label, _ = top_expression(mean)
        probabilities = {cast(ExpressionLabel, name): round(value, 4) for name, value in mean.items()}
        return EventExpression(label=cast(ExpressionLabel, label), probabilities=probabilities)

    def _loaded_model(self) -> ExpressionModel | None:
        if not self._loaded:
            from vigil.models.expression import load_installed

            self._model = load_installed(self.models_dir)
            self._loaded = True
        return self._model
