"""What a worker found in one frame, as it travels to the tracker on the faces stream.

Workers may analyse a camera's frames out of order and on several machines; the tracker
needs them in order. So each result names its camera and frame number, and carries what
tracking needs: boxes, landmarks, embeddings (for association) and the open-set decision
made against the gallery at that moment (with the rule in force, for the event).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.identify import Identification
from vigil.typing import Embedding


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

    @classmethod
    def from_identification(cls, result: Identification) -> FaceResult:
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
            "faces": [_face_dict(face) for face in self.faces],
        }
        return {"result": json.dumps(body)}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> FrameResult:
        body = json.loads(fields[b"result"])
        return cls(
            camera=body["camera"],
            number=int(body["number"]),
            captured_at=float(body["captured_at"]),
            faces=[_face_from_dict(face) for face in body["faces"]],
            end_of_stream=bool(body["end_of_stream"]),
            threshold=math.nan if body["threshold"] is None else float(body["threshold"]),
            margin=math.nan if body["margin"] is None else float(body["margin"]),
            calibration=body["calibration"],
            embedder_version=body["embedder_version"],
            read_at=math.nan if body.get("read_at") is None else float(body["read_at"]),
        )


def _face_dict(face: FaceResult) -> dict[str, Any]:
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
    }


def _face_from_dict(raw: dict[str, Any]) -> FaceResult:
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
    )
