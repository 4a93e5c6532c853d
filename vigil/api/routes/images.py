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


class AnalyzedFace(FaceOut):
    age: float = Field(description="Estimated age in years.")
    age_range: list[int] = Field(description="The estimate's likely range, [low, high] years.")
    gender: str = Field(description="`female` or `male`, as the training data labelled people.")
    gender_confidence: float = Field(description="0.5-1; low for children, whose estimate is unreliable.")


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
    """Every face with who it is (or unknown) and its estimated age and gender (`vigil analyze`)."""
    analysed = await in_turn(context, context.models.analyze, image)
    return AnalyzeOut(faces=[AnalyzedFace(**result.to_dict(), **face.to_dict()) for result, face in analysed])


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
