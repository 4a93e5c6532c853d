"""Argument types the command line shares: each checks its value before any work starts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def writable_json(text: str) -> Path:
    """A results path whose folder exists (or can be made) and is writable."""
    path = Path(text)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot create {path.parent}: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path.parent} is not writable")
    return path


def writable_folder(text: str) -> Path:
    """A folder to write files into, that exists (or can be made) and is writable."""
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path} is not writable")
    return path


def probability(text: str) -> float:
    """A rate strictly between 0 and 1, e.g. a target false-accept rate."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (exclusive), e.g. 1e-3")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (epochs, repeats, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def cosine(text: str) -> float:
    """A cosine similarity, -1 to 1 (``--threshold``)."""
    return _number_in(text, -1.0, 1.0)


def cosine_margin(text: str) -> float:
    """A lead in cosine similarity, 0 to 2 (``--margin``)."""
    return _number_in(text, 0.0, 2.0)


def _number_in(text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
    return value
