"""Builders shared by the fine-tuned attribute model's tests: a tail promoted in a home of the test's own."""

from __future__ import annotations

from pathlib import Path

import torch

from vigil.artifacts import ArtifactRegistry
from vigil.models.attribute_tail import TAIL_BACKBONE, TAIL_FILE, AttributeTail, tail_to_bytes
from vigil.models.dlib_resnet import DlibResNet


def untrained_tail(backbone: DlibResNet, blocks: int = 2, seed: int = 0) -> AttributeTail:
    """A tail whose output layer is random enough that different faces get different answers.

    Training one takes minutes (BENCHMARKS.md); these tests check how a tail is stored, loaded
    and run, which does not depend on what it learned.
    """
    torch.manual_seed(seed)
    tail = AttributeTail(backbone, blocks)
    torch.nn.init.normal_(tail.out.weight, std=0.05)
    return tail.eval()


def promote_tail(home: Path, backbone: DlibResNet, tail: AttributeTail) -> str:
    """Store ``tail`` as an ``attribute_tail`` artifact in ``home`` and put it in force; its version."""
    registry = ArtifactRegistry(home)
    artifact = registry.add(
        "attribute_tail",
        {TAIL_FILE: tail_to_bytes(tail, backbone)},
        embedder_version=TAIL_BACKBONE,
        metrics={},
        data={"note": "untrained, for tests"},
    )
    registry.promote("attribute_tail", artifact.version)
    return artifact.version
