"""Picking the torch device from a config value."""

from __future__ import annotations

import torch

from vigil.config.detector import Device
from vigil.errors import ConfigError


def resolve_device(device: Device) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda`` into a torch device.

    Raises:
        ConfigError: ``cuda`` was asked for but no CUDA device is available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)
