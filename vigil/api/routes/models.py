"""Trained artifacts (calibrations, embedding heads, age/gender heads): list, promote, roll back.

A running service follows a promotion or a rollback without restarting (``vigil models``).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vigil.api.audit import record_change
from vigil.api.context import API_PREFIX, AdminKey, Context, ReadKey
from vigil.api.errors import ERROR_RESPONSES
from vigil.artifacts import ArtifactKind

router = APIRouter(prefix=f"{API_PREFIX}/models", responses=ERROR_RESPONSES, tags=["models"])


class ArtifactOut(BaseModel):
    kind: str = Field(
        description=(
            "`calibration`, `head`, `attributes` (age and gender heads) or `attribute_tail` "
            "(fine-tuned age and gender models)."
        )
    )
    version: str
    created_at: str
    embedder_version: str = Field(description="The embedding space it was made for.")
    metrics: dict[str, float | int | str] = Field(description="Figures measured on held-out data.")
    data: dict[str, float | int | str] = Field(description="What it was fitted or trained on, and how.")
    notes: str
    in_force: bool


class OperatingPoint(BaseModel):
    threshold: float = Field(description="Cosine similarity a match needs.")
    margin: float = Field(description="How far the best person must lead the second.")
    source: str = Field(description="The calibration (or configuration) the rule comes from.")
    target_fpir: float = Field(description="The false-positive identification rate it was fitted to.")
    people: int = Field(description="People enrolled: the rule is fitted to the gallery's size.")


class ModelsOut(BaseModel):
    items: list[ArtifactOut] = Field(description="Every stored artifact, oldest first per kind.")
    operating_point: OperatingPoint | None = Field(description="The decision rule in force; null if none.")
    operating_point_error: str | None = Field(description="Why there is no rule in force (e.g. no models).")


class PromotedOut(BaseModel):
    kind: str
    in_force: str | None = Field(description="The version in force now; null: the default applies.")


@router.get("", response_model=ModelsOut)
async def models(context: Context, key: ReadKey) -> ModelsOut:
    """Every stored artifact, which are in force, and the decision rule in force now."""
    from vigil.artifacts import KINDS, ArtifactRegistry
    from vigil.errors import VigilError

    registry = ArtifactRegistry(context.settings.home)
    in_force = {kind: registry.history(kind)[-1:] for kind in KINDS}
    items = [
        ArtifactOut(
            kind=a.kind,
            version=a.version,
            created_at=a.created_at,
            embedder_version=a.embedder_version,
            metrics=a.metrics,
            data=a.data,
            notes=a.notes,
            in_force=a.version in in_force[a.kind],
        )
        for a in registry.list()
    ]
    try:
        rule, people = await asyncio.to_thread(context.models.operating_point)
    except VigilError as exc:  # no models or no calibration: the list is still worth showing
        return ModelsOut(items=items, operating_point=None, operating_point_error=str(exc))
    point = OperatingPoint(
        threshold=rule.threshold,
        margin=rule.margin,
        source=rule.source,
        target_fpir=context.settings.indexer.target_fpir,
        people=people,
    )
    return ModelsOut(items=items, operating_point=point, operating_point_error=None)


@router.post("/{version}/promote", response_model=PromotedOut)
def promote(version: str, context: Context, key: AdminKey) -> PromotedOut:
    """Put an artifact in force (a running service follows); 404 if there is no such version."""
    from vigil.artifacts import ArtifactRegistry, kind_of

    artifact = ArtifactRegistry(context.settings.home).promote(kind_of(version), version)
    record_change(context.client, key.name, "models.promote", artifact.version)
    return PromotedOut(kind=artifact.kind, in_force=artifact.version)


@router.post("/{kind}/rollback", response_model=PromotedOut)
def rollback(kind: ArtifactKind, context: Context, key: AdminKey) -> PromotedOut:
    """Go back to the artifact in force before the current one (null: back to the default)."""
    from vigil.artifacts import ArtifactRegistry

    previous = ArtifactRegistry(context.settings.home).rollback(kind)
    record_change(context.client, key.name, "models.rollback", kind)
    return PromotedOut(kind=kind, in_force=previous.version if previous else None)
