"""The face models behind the API's routes: loaded once, used by one request at a time.

Each request's image is decoded (and refused if it is not one) only when its turn comes, so at
most one decoded upload is in memory; the routes turn requests away (503 ``busy``) when
``IDENTIFY_QUEUE`` are already waiting. Enrolment uploads are written to a private temporary
folder and enrolled like files, then deleted with the folder.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import redis

from vigil.config import Settings

logger = logging.getLogger(__name__)


class SharedModels:
    """The face pipeline and identifier, loaded on first use and shared by requests, one at a time.

    Example:
        >>> models = SharedModels(settings, client)
        >>> [result.label for result in models.identify(jpeg_bytes, "photo.jpg")]
        ['Barack Obama']
    """

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._settings, self._client = settings, client
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()  # `+=` is not atomic across threads: guard the count
        self._identifier: Any = None
        self._attribute_model: Any = None
        self._expression_model: Any = None
        self._expression_tried = False  # the weights missing is logged once, not per request
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Images waiting for the models now."""
        return self._waiting

    def identify(self, data: bytes, source: str) -> list[Any]:
        """The faces of an uploaded image with who they are (``Identification`` each)."""
        with self._turn():
            return self._identify(data, source)

    def analyze(self, data: bytes, source: str) -> list[tuple[Any, Any, Any]]:
        """The faces of an uploaded image with who they are, their age and gender, and their expression
        probabilities (None for a face too small, and for all without the expression weights)."""
        from vigil.image import decode_image
        from vigil.models import expression
        from vigil.models.attribute_model import load_attribute_model

        with self._turn():
            image = decode_image(data, source, max_pixels=self._settings.api.max_image_pixels)
            results = self._identify_image(image)
            if not results:
                return []
            if self._attribute_model is None:
                self._attribute_model = load_attribute_model(
                    self._settings, self._loaded_identifier().pipeline.embedder.version
                )
            if not self._expression_tried:
                # Missing weights degrade to `expression: null` (and a warning), never a failed request.
                self._expression_model = expression.load_installed(self._settings.model_files_dir)
                self._expression_tried = True
            expressions = (
                expression.expressions_in(
                    self._expression_model, image, [result.face.box_xyxy.tolist() for result in results]
                )
                if self._expression_model is not None
                else [None] * len(results)
            )
            attributes = self._attribute_model.estimate(image, [result.face for result in results])
            return list(zip(results, attributes, expressions, strict=True))

    def detect(self, data: bytes, source: str) -> list[Any]:
        """The faces of an uploaded image, embedded but not identified (pipeline ``Face`` each)."""
        from vigil.image import decode_image

        with self._turn():
            image = decode_image(data, source, max_pixels=self._settings.api.max_image_pixels)
            return list(self._loaded_identifier().pipeline.analyze([image])[0])

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """One image at a time, counting those that wait (``waiting``)."""
        with self._count_lock:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._count_lock:
                self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    def _identify(self, data: bytes, source: str) -> list[Any]:
        from vigil.image import decode_image

        # Decoded (and refused) before any model runs.
        return self._identify_image(
            decode_image(data, source, max_pixels=self._settings.api.max_image_pixels)
        )

    def _identify_image(self, image: Any) -> list[Any]:
        identifier = self._loaded_identifier()
        identifier.check_gallery()
        return list(identifier.identify(image))

    def enroll(self, name: str, photos: list[tuple[str, bytes]], add_to_existing: bool) -> Any:
        """Enrol ``name`` from uploaded photos, spooled to a private folder and enrolled like files."""
        import tempfile
        from pathlib import Path

        from indexer.enroll import enroll_person
        from indexer.sources import SourceStore

        sources = SourceStore.from_settings(self._settings) if self._settings.indexer.keep_sources else None
        with self._turn(), tempfile.TemporaryDirectory(prefix="vigil-upload-") as folder:
            paths = []
            for index, (filename, data) in enumerate(photos):
                # The name the user gave, without any folder, and numbered: it is what reasons quote.
                path = Path(folder) / f"{index:02d}-{Path(filename).name or 'photo'}"
                path.write_bytes(data)
                paths.append(path)
            identifier = self._loaded_identifier()
            return enroll_person(
                identifier,
                self._settings.indexer,
                name,
                paths,
                add_to_existing=add_to_existing,
                sources=sources,
            )

    def operating_point(self) -> tuple[Any, int]:
        """The decision rule in force now (``Thresholds``) and the number of people it is for."""
        with self._turn():
            identifier = self._loaded_identifier()
            identifier.refresh()
            return identifier.thresholds(), identifier.people

    def _loaded_identifier(self) -> Any:
        from indexer.gallery import Gallery
        from indexer.identify import Identifier
        from vigil.models.pipeline import FacePipeline

        if self._identifier is None:
            pipeline = FacePipeline.from_settings(self._settings)
            pipeline.load()
            self._identifier = Identifier.from_settings(Gallery(self._client), pipeline, self._settings)
        return self._identifier
