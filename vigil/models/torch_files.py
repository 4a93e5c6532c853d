"""Vigil's own model files: a ``torch.save`` dict with a format name and version, no pickled classes.

Heads (:mod:`vigil.models.head`), attribute heads (:mod:`vigil.models.attributes`) and fine-tuned
attribute models (:mod:`vigil.models.attribute_tail`) are stored this way; each checks its own
fields after :func:`read_model_dict` has checked the envelope.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from vigil.errors import ModelLoadError, first_line


def read_model_dict(
    data: bytes, *, what: str, called: str, format_name: str, version: int, train: str
) -> dict[str, Any]:
    """The dict a model file holds, once it is known to be ``format_name`` at ``version``.

    Args:
        data: The file's contents.
        what: The file in words, for errors ("attribute head").
        called: What it is not when the format differs ("a Vigil attribute head").
        format_name: The ``format`` the dict must carry.
        version: The ``format_version`` this Vigil reads.
        train: The command that makes such a file, for errors.

    Raises:
        ModelLoadError: Corrupt or not a torch file, another format, or another version.
    """
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's restricted unpickler fails on bad bytes with any of a dozen types
        raise ModelLoadError(f"the {what} is corrupt or not a torch file ({first_line(exc)})") from None
    if not isinstance(raw, dict) or raw.get("format") != format_name:
        raise ModelLoadError(f"not {called} (no {format_name!r} format); train one with `{train}`")
    if raw.get("format_version") != version:
        raise ModelLoadError(
            f"{what} format version {raw.get('format_version')!r}; this Vigil reads version "
            f"{version}: retrain it with `{train}`"
        )
    return raw
