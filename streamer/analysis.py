"""What a worker found in one frame, as it travels to the tracker on the faces stream.

Workers may analyse a camera's frames out of order and on several machines; the tracker
needs them in order. So each result names its camera and frame number, and carries what
tracking needs: boxes, landmarks, embeddings (for association) and the open-set decision
made against the gallery at that moment (with the rule in force, for the event). Only when
the user opted in to face images does a face also carry a small JPEG of itself
(``face_crop_jpeg``): unmatched faces with ``indexer.unknowns.keep_images``, every face with
``streamer.events.thumbnails``. The worker has the frame, the tracker only what travels here,
and only the tracker knows which track is kept and which face an event rests on.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from indexer.identify import Identification
from vigil.errors import MalformedEntryError
from vigil.image import crop_with_margin
from vigil.typing import Embedding, ImageRGB

# A kept unknown face is for a person to recognise by eye, not for matching (the embeddings
# are): 128 px a side and JPEG quality 85 make 3 to 6 KB, with the margin of the aligner's
# default padding (a quarter of the face) to show hair and chin.
FACE_CROP_MAX_SIDE_PX = 128
FACE_CROP_MARGIN = 0.25
FACE_CROP_JPEG_QUALITY = 85
CHIP_JPEG_QUALITY = 95
CHIPS_TTL_S = 120
"""How long a result's chips wait for the tracker (seconds): a tracker further behind gives its
tracks' events no attributes from them, rather than keep face images longer."""


@dataclass(frozen=True)
class FaceResult:
    """One face in a frame and who it was taken for.

    Attributes:
        box: x1, y1, x2, y2 pixels.
        landmarks: Five [x, y] points.
        detection_score: Detector probability.
        embedding: ``(D,)`` float32.
        identity_id: The person, or None when unknown.
        name: Their display name, or None.
        score: Best person's cosine similarity (None with an empty gallery).
        candidate_id: The best person even when not accepted (for voting), or None.
        margin: Best person's lead over the runner-up (``inf`` with none; None with an empty
            gallery), for template aging.
        crop_jpeg: The face as a small JPEG (``face_crop_jpeg``), or None: unmatched faces with
            ``indexer.unknowns.keep_images``, every face with ``streamer.events.thumbnails``.
        chip_jpeg: The face's 150 px dlib-layout chip as JPEG (``chip_jpeg``), or None: every face
            with ``streamer.tracker.attribute_model: fine_tuned``, which reads chips, not embeddings.
            Never on the results stream: it travels under the result's ``chips_key`` (see there).
    """

    box: list[float]
    landmarks: list[list[float]]
    detection_score: float
    embedding: Embedding
    identity_id: str | None
    name: str | None
    score: float | None
    candidate_id: str | None
    margin: float | None = None
    crop_jpeg: bytes | None = field(default=None, repr=False)
    chip_jpeg: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_identification(
        cls, result: Identification, crop_jpeg: bytes | None = None, chip_jpeg: bytes | None = None
    ) -> FaceResult:
        decision = result.decision
        return cls(
            box=[round(float(v), 1) for v in result.face.box_xyxy],
            landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in result.face.landmarks],
            detection_score=round(float(result.face.score), 4),
            embedding=np.asarray(result.face.embedding, np.float32),
            identity_id=decision.identity_id,
            name=result.name,
            score=None if math.isnan(decision.score) else round(decision.score, 4),
            candidate_id=decision.candidates[0].identity_id if decision.candidates else None,
            margin=None if math.isnan(decision.margin) else round(decision.margin, 4),
            crop_jpeg=crop_jpeg,
            chip_jpeg=chip_jpeg,
        )


@dataclass(frozen=True)
class FrameResult:
    """A worker's result for one frame (or the end of a camera's stream).

    Attributes:
        camera: Camera name.
        number: Frame number; for an end-of-stream result, how many frames the camera sent.
        captured_at: Capture time (Unix seconds).
        faces: Faces found (empty for an end-of-stream result).
        end_of_stream: The camera's source ended.
        threshold: Similarity threshold in force.
        margin: Required lead in force.
        calibration: Where the thresholds came from.
        embedder_version: Embedding space.
        read_at: When the reader got the frame (Unix seconds), for latency.
        chips_key: The Redis hash of its faces' chips (face index → JPEG), or None. Chips are
            face images: they are kept apart from the results stream, which keeps the last
            ``streamer.bus.max_results`` results, under a key that expires after ``CHIPS_TTL_S``
            and that the tracker deletes once it has read it.
    """

    camera: str
    number: int
    captured_at: float
    faces: list[FaceResult]
    end_of_stream: bool = False
    threshold: float = math.nan
    margin: float = math.nan
    calibration: str = ""
    embedder_version: str = ""
    read_at: float = math.nan
    chips_key: str | None = None

    def to_fields(self) -> dict[str, str]:
        """Stream entry fields."""
        body: dict[str, Any] = {
            "camera": self.camera,
            "number": self.number,
            "captured_at": self.captured_at,
            "end_of_stream": self.end_of_stream,
            "threshold": None if math.isnan(self.threshold) else self.threshold,
            "margin": None if math.isnan(self.margin) else self.margin,
            "calibration": self.calibration,
            "embedder_version": self.embedder_version,
            "read_at": None if math.isnan(self.read_at) else self.read_at,
            "chips_key": self.chips_key,
            "faces": [face_to_dict(face) for face in self.faces],
        }
        return {"result": json.dumps(body)}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes] | None) -> FrameResult:
        """The result a stream entry holds.

        Raises:
            MalformedEntryError: The entry is not a result (written by hand or by another
                version), or has no fields (trimmed while it was pending).
        """
        if not fields:
            raise MalformedEntryError("no fields: trimmed from the stream while pending")
        try:
            body = json.loads(fields[b"result"])
            return cls(
                camera=str(body["camera"]),
                number=int(body["number"]),
                captured_at=float(body["captured_at"]),
                faces=[face_from_dict(face) for face in body["faces"]],
                end_of_stream=bool(body["end_of_stream"]),
                threshold=math.nan if body["threshold"] is None else float(body["threshold"]),
                margin=math.nan if body["margin"] is None else float(body["margin"]),
                calibration=str(body["calibration"]),
                embedder_version=str(body["embedder_version"]),
                read_at=math.nan if body.get("read_at") is None else float(body["read_at"]),
                chips_key=None if body.get("chips_key") is None else str(body["chips_key"]),
            )
        # JSON and base64 errors are ValueErrors; a list where an object belongs, a TypeError.
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedEntryError(f"not a frame result ({type(exc).__name__}: {exc})") from None


def face_crop_jpeg(image: ImageRGB, box_xyxy: Sequence[float]) -> bytes | None:
    """A face with a margin, scaled down to at most ``FACE_CROP_MAX_SIDE_PX`` a side, as JPEG.

    Args:
        image: The frame, ``(H, W, 3)`` uint8 RGB.
        box_xyxy: The face's corners in pixels (may reach past the frame's edges).

    Returns:
        The JPEG file's bytes, or None when the box lies outside the frame.
    """
    crop = crop_with_margin(image, box_xyxy, FACE_CROP_MARGIN)
    if crop is None:
        return None
    scale = FACE_CROP_MAX_SIDE_PX / max(crop.shape[:2])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, FACE_CROP_JPEG_QUALITY]
    )
    return jpeg.tobytes() if ok else None


def chip_jpeg(chip: ImageRGB) -> bytes | None:
    """An aligned chip as JPEG for the tracker's fine-tuned attribute model (None if encoding fails).

    Quality 95: the model was trained on chips cut from JPEG photos; a harsher setting would add
    artefacts it never saw, and 150 px chips stay near 6 KB.
    """
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(chip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, CHIP_JPEG_QUALITY]
    )
    return jpeg.tobytes() if ok else None


def chips_key_for(faces_stream: str) -> str:
    """A fresh key for one result's chips, beside the results stream (``StreamKeys.chips_pattern``)."""
    return f"{faces_stream}:chips:{uuid.uuid4().hex}"


def decode_jpeg(jpeg: bytes) -> ImageRGB | None:
    """A JPEG (a frame, a face crop or a chip) as ``(H, W, 3)`` uint8 RGB, or None when it is not one."""
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        return None
    return np.asarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def face_to_dict(face: FaceResult) -> dict[str, Any]:
    """A face as JSON-ready values (embedding and crop base64): on the results stream and in tracker state."""
    return {
        "box": face.box,
        "landmarks": face.landmarks,
        "detection_score": face.detection_score,
        "embedding": base64.b64encode(face.embedding.astype("<f4").tobytes()).decode("ascii"),
        "identity_id": face.identity_id,
        "name": face.name,
        "score": face.score,
        "candidate_id": face.candidate_id,
        "margin": face.margin,  # inf (no runner-up) travels as JSON's Infinity, which Python reads back
        "crop": None if face.crop_jpeg is None else base64.b64encode(face.crop_jpeg).decode("ascii"),
    }


def face_from_dict(raw: dict[str, Any]) -> FaceResult:
    """The face ``face_to_dict`` wrote (raises KeyError, TypeError or ValueError on anything else)."""
    return FaceResult(
        box=[float(v) for v in raw["box"]],
        landmarks=[[float(x), float(y)] for x, y in raw["landmarks"]],
        detection_score=float(raw["detection_score"]),
        embedding=np.frombuffer(base64.b64decode(raw["embedding"]), dtype="<f4").astype(np.float32),
        identity_id=raw["identity_id"],
        name=raw["name"],
        score=raw["score"],
        candidate_id=raw["candidate_id"],
        margin=raw.get("margin"),
        crop_jpeg=None if raw.get("crop") is None else base64.b64decode(raw["crop"]),
    )
