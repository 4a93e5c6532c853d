"""The base model every configuration section derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class VigilModel(BaseModel):
    """Strict base: unknown keys are errors, so a typo in YAML never passes silently.

    Infinity and not-a-number are refused for every number (YAML's ``.inf`` would pass a
    ``gt=0`` bound, then print as ``null``); fields bound their largest values too.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
