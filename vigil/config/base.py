"""The base model every configuration section derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class VigilModel(BaseModel):
    """Strict base: unknown keys are errors, so a typo in YAML never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
