"""The face pipeline: frames → detections → aligned chips → embeddings.

It is the one place that wires detector, aligner and embedder together; everything that
needs faces with embeddings (enrolment, the stream workers, the benchmarks) uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vigil.config import Settings
from vigil.config.still_faces import StillFacesConfig
from vigil.models.aligner import FaceAligner
from vigil.models.detector import Detector, FaceDetections
from vigil.models.embedder import Embedder
from vigil.models.registry import create_detector, create_embedder
from vigil.models.still_faces import still_face_sources
from vigil.typing import Embedding, ImageRGB

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Face:
    """One detected, embedded face.

    Attributes:
        box_xyxy: ``(4,)`` float32 pixel corners in the frame.
        score: Detector face probability (0-1).
        landmarks: ``(5, 2)`` float32 detector points in the frame (``FaceDetections``' order).
        embedding: ``(D,)`` float32 descriptor from the pipeline's embedder.
        reused: The embedding is that of the same still face in an earlier frame of the batch
            (``embedder.still_faces``), not one of its own.
    """

    box_xyxy: np.ndarray
    score: float
    landmarks: np.ndarray
    embedding: Embedding
    reused: bool = False

    @property
    def size_px(self) -> float:
        """The shorter side of the box, in pixels."""
        width, height = self.box_xyxy[2:] - self.box_xyxy[:2]
        return float(min(width, height))


class FacePipeline:
    """Detect, align and embed faces in batches of frames.

    Example:
        >>> pipeline = FacePipeline.from_settings(load_settings())
        >>> [faces] = pipeline.analyze([load_image(Path("obama.jpg"))])
        >>> faces[0].embedding.shape
        (128,)
    """

    def __init__(
        self,
        detector: Detector,
        aligner: FaceAligner,
        embedder: Embedder,
        still_faces: StillFacesConfig | None = None,
    ) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.still_faces = still_faces if still_faces is not None else StillFacesConfig(enabled=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> FacePipeline:
        embedder = create_embedder(settings.embedder, settings.cache_dir, settings.model_files_dir)
        return cls(
            create_detector(settings.detector, settings.model_files_dir),
            FaceAligner(settings.aligner, embedder.chip_size_px, embedder.chip_layout),
            embedder,
            settings.embedder.still_faces,
        )

    def load(self) -> None:
        """Load every model now (otherwise they load on first use)."""
        self.detector.load()
        self.embedder.load()

    def analyze(self, frames: Sequence[ImageRGB]) -> list[list[Face]]:
        """Every face in every frame, best detection score first.

        Detection is batched over frames, and embedding over all faces of all frames.
        """
        detections = self.detector.detect(frames)
        return self.embed_detections(frames, detections)

    def embed_detections(
        self,
        frames: Sequence[ImageRGB],
        detections: Sequence[FaceDetections],
        scenes: Sequence[str] | None = None,
    ) -> list[list[Face]]:
        """Align and embed already-detected faces (one ``FaceDetections`` per frame).

        Args:
            frames: The frames.
            detections: Their faces.
            scenes: Each frame's camera, when the batch holds consecutive frames of cameras
                in order: a face that has not moved since an earlier frame of its camera
                takes that face's embedding (``embedder.still_faces``). None: every face is
                embedded.
        """
        chips = [
            self.aligner.align(frame, faces.landmarks)
            for frame, faces in zip(frames, detections, strict=True)
        ]
        size = self.aligner.chip_size_px
        all_chips = np.concatenate([np.zeros((0, size, size, 3), np.uint8), *chips])
        sources = self._still_face_sources(all_chips, detections, scenes)
        fresh = [index for index, source in enumerate(sources) if source is None]
        embeddings = np.empty((len(all_chips), self.embedder.dim), np.float32)
        embeddings[fresh] = self.embedder.embed(all_chips[fresh])
        for index, source in enumerate(sources):
            if source is not None:
                embeddings[index] = embeddings[source]
        results: list[list[Face]] = []
        offset = 0
        for faces in detections:
            results.append(
                [
                    Face(
                        faces.boxes_xyxy[i],
                        float(faces.scores[i]),
                        faces.landmarks[i],
                        embeddings[offset + i],
                        reused=sources[offset + i] is not None,
                    )
                    for i in range(len(faces))
                ]
            )
            offset += len(faces)
        return results

    def _still_face_sources(
        self, chips: ImageRGB, detections: Sequence[FaceDetections], scenes: Sequence[str] | None
    ) -> list[int | None]:
        if scenes is None or not self.still_faces.enabled:
            return [None] * len(chips)
        if len(scenes) != len(detections):
            raise ValueError(f"{len(scenes)} scenes for {len(detections)} frames")
        frame_of_face = [frame for frame, faces in enumerate(detections) for _ in range(len(faces))]
        landmarks = np.concatenate(
            [np.zeros((0, 5, 2), np.float32), *(faces.landmarks for faces in detections)]
        )
        boxes = np.concatenate([np.zeros((0, 4), np.float32), *(faces.boxes_xyxy for faces in detections)])
        sizes = (boxes[:, 2:] - boxes[:, :2]).min(axis=1)
        return still_face_sources(
            chips,
            landmarks,
            sizes,
            [scenes[frame] for frame in frame_of_face],
            frame_of_face,
            self.still_faces,
        )

    def central_face(self, image: ImageRGB) -> Face | None:
        """The face whose box centre is nearest the image centre, or None.

        This is how cropped benchmark images (LFW) say which face they are about.
        """
        return self.central_faces([image])[0]

    def central_faces(self, images: Sequence[ImageRGB]) -> list[Face | None]:
        """``central_face`` for a batch of images (detection and embedding batched)."""
        central: list[FaceDetections] = []
        for image, detections in zip(images, self.detector.detect(images), strict=True):
            if len(detections) == 0:
                central.append(detections)
                continue
            index = nearest_to_centre(detections, image.shape[1], image.shape[0])
            central.append(
                FaceDetections(
                    detections.boxes_xyxy[index : index + 1],
                    detections.scores[index : index + 1],
                    detections.landmarks[index : index + 1],
                )
            )
        return [faces[0] if faces else None for faces in self.embed_detections(images, central)]


def nearest_to_centre(detections: FaceDetections, width: int, height: int) -> int:
    """Index of the detection whose box centre is nearest the frame centre."""
    centres = (detections.boxes_xyxy[:, :2] + detections.boxes_xyxy[:, 2:]) / 2
    distances = np.linalg.norm(centres - np.array([width / 2, height / 2], dtype=np.float32), axis=1)
    return int(np.argmin(distances))
