"""Identify, analyze and detect the faces of an uploaded image, one image at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from pydantic import BaseModel, Field

from vigil.api.context import API_PREFIX, Context, ReadKey, in_turn
from vigil.api.errors import ERROR_RESPONSES

router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES, tags=["faces"])

Image = Annotated[UploadFile, File(description="A photo (JPEG, PNG, WebP, BMP, TIFF).")]


class FaceOut(BaseModel):
    name: str | None = Field(description="Who, or null: unknown.")
    identity_id: str | None
    score: float | None = Field(description="Cosine similarity to the best person (higher = more alike).")
    box_xyxy: list[float] = Field(description="x1, y1, x2, y2 in the image's pixels.")


class IdentifyOut(BaseModel):
    faces: list[FaceOut] = Field(description="Every face found, best detection first.")


class ExpressionOut(BaseModel):
    label: str = Field(
        description="The most probable of the seven: how the face looks, not what anyone feels."
    )
    probabilities: dict[str, float] = Field(
        description="angry, disgust, fear, happy, sad, surprise, neutral: each 0-1, summing to 1."
    )


class PoseOut(BaseModel):
    yaw: float = Field(description="Degrees turned; positive: to the subject's left.")
    pitch: float = Field(description="Degrees nodded; positive: looking up.")
    roll: float = Field(description="Degrees tilted; positive: counter-clockwise in the image.")


class AnalyzedFace(FaceOut):
    age: float = Field(description="Estimated age in years.")
    age_range: list[int] = Field(description="The estimate's likely range, [low, high] years.")
    gender: str = Field(description="`female` or `male`, as the training data labelled people.")
    gender_confidence: float = Field(description="0.5-1; low for children, whose estimate is unreliable.")
    pose: PoseOut | None = Field(
        None,
        description="Head pose from the 5 landmarks, relative to the line of sight (null: degenerate).",
    )
    expression: ExpressionOut | None = Field(
        None,
        description=(
            "Facial expression (mini-Xception, ~66 % on FER-2013; unreliable). Null for a face under "
            "16 px, or when the expression weights are not installed."
        ),
    )


class AnalyzeOut(BaseModel):
    faces: list[AnalyzedFace]


class DetectedFace(BaseModel):
    box_xyxy: list[float]
    score: float = Field(description="Detector probability that this is a face (0-1).")
    landmarks: list[list[float]] = Field(
        description="Eyes, nose tip, mouth corners as [x, y] (left/right as seen in the image)."
    )


class DetectOut(BaseModel):
    faces: list[DetectedFace]


@router.post("/identify", response_model=IdentifyOut)
async def identify(image: Image, context: Context, key: ReadKey) -> IdentifyOut:
    """Every face in an uploaded image: its box, and who it is or that it is unknown."""
    results = await in_turn(context, context.models.identify, image)
    return IdentifyOut(faces=[FaceOut(**result.to_dict()) for result in results])


@router.post("/analyze", response_model=AnalyzeOut)
async def analyze(image: Image, context: Context, key: ReadKey) -> AnalyzeOut:
    """Every face with who it is (or unknown), its estimated age and gender, expression and head pose."""
    from vigil.models.expression import expression_to_dict
    from vigil.models.head_pose import head_pose_in_box, pose_to_dict

    analysed = await in_turn(context, context.models.analyze, image)
    return AnalyzeOut(
        faces=[
            AnalyzedFace(
                **result.to_dict(),
                **face.to_dict(),
                expression=expression_to_dict(probabilities),
                pose=pose_to_dict(head_pose_in_box(result.face.landmarks, result.face.box_xyxy)),
            )
            for result, face, probabilities in analysed
        ]
    )


@router.post("/detect", response_model=DetectOut)
async def detect(image: Image, context: Context, key: ReadKey) -> DetectOut:
    """Every face's box, detection score and landmarks, without identifying anyone."""
    found = await in_turn(context, context.models.detect, image)
    return DetectOut(
        faces=[
            DetectedFace(
                box_xyxy=[round(float(v), 1) for v in face.box_xyxy],
                score=round(face.score, 4),
                landmarks=face.landmarks.round(1).tolist(),
            )
            for face in found
        ]
    )
