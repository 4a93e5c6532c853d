"""The facenet-pytorch backend: loading from a local path, shapes and error paths.

No pretrained facenet weights ship in any package we can install, so these tests build a
randomly initialised InceptionResnetV1 state dict: enough to test plumbing, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vigil.config import EmbedderConfig
from vigil.errors import ConfigError, ModelLoadError
from vigil.models.facenet import FacenetEmbedder
from vigil.models.registry import create_embedder


@pytest.fixture(scope="module")
def facenet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("facenet") / "weights.pt"
    torch.save(InceptionResnetV1(pretrained=None).eval().state_dict(), path)
    return path


def test_embeds_chips_to_unit_vectors(facenet_weights: Path) -> None:
    # given the facenet backend from a local state dict
    embedder = create_embedder(
        EmbedderConfig(backend="facenet", weights_path=facenet_weights, device="cpu", batch_size=2),
        Path("/unused"),
        Path("/unused"),
    )
    assert isinstance(embedder, FacenetEmbedder)
    chips = np.random.default_rng(0).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    # when chips are embedded (3 chips, batch size 2: two batches)
    embeddings = embedder.embed(chips)
    # then each is a 512-d unit vector, and the version names the weights
    assert embeddings.shape == (3, 512) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert embedder.version.startswith("facenet_") and embedder.version != "facenet_unloaded"
    # and batching does not change results
    np.testing.assert_allclose(embedder.embed(chips[2:]), embeddings[2:], atol=1e-5)
    assert embedder.embed(chips[:0]).shape == (0, 512)


def test_facenet_needs_a_weights_path() -> None:
    with pytest.raises(ConfigError, match="weights_path"):
        create_embedder(EmbedderConfig(backend="facenet"), Path("/unused"), Path("/unused"))


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        # the configured file does not exist
        (lambda tmp: tmp / "missing.pt", "cannot read facenet weights"),
        # the file is not a torch checkpoint
        (lambda tmp: (tmp / "junk.pt").write_bytes(b"junk") and tmp / "junk.pt", "not an InceptionResnetV1"),
        # a checkpoint of some other network
        (
            lambda tmp: torch.save({"conv.weight": torch.zeros(1)}, tmp / "other.pt") or tmp / "other.pt",
            "not an InceptionResnetV1|lacks",
        ),
    ],
    ids=["missing", "junk", "other-network"],
)
def test_bad_weights_raise_model_load_error(tmp_path: Path, make_file, message: str) -> None:
    embedder = FacenetEmbedder(make_file(tmp_path), device="cpu")
    with pytest.raises(ModelLoadError, match=message):
        embedder.load()


def test_wrong_chip_size_is_rejected(facenet_weights: Path) -> None:
    embedder = FacenetEmbedder(facenet_weights, device="cpu")
    with pytest.raises(ValueError, match="160"):
        embedder.embed(np.zeros((1, 150, 150, 3), np.uint8))
