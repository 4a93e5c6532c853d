"""Tests of dlib's ResNet in PyTorch, against dlib itself on real face chips."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.models.conftest import CHIP_IMAGES
from vigil.errors import ModelLoadError
from vigil.models import dlib_resnet
from vigil.models.dlib_format import DlibNetwork, load_network
from vigil.models.dlib_resnet import DlibEmbedder, add_zero_padded, convert_network, fold_affine
from vigil.typing import Embeddings, ImageRGB

PARITY_MAX_ABS_DIFF = 1e-4  # a correct float32 port lands around 4e-7
BATCH_VS_SINGLE_MAX_ABS_DIFF = 1e-5
FLIP_MAX_DISTANCE = 0.2
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold, stored in the model file
FP16_MAX_DISTANCE = 0.02  # fp16 vs fp32 on CPU lands around 1e-3


@pytest.fixture(scope="module")
def network(dlib_weights_path: Path) -> DlibNetwork:
    return load_network(dlib_weights_path)


@pytest.fixture(scope="module")
def embedder(dlib_weights_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DlibEmbedder:
    """A loaded CPU float32 embedder without flip averaging (the configuration dlib matches)."""
    model = DlibEmbedder(
        dlib_weights_path, device="cpu", cache_dir=tmp_path_factory.mktemp("cache"), batch_size=2
    )
    model.load()
    return model


@pytest.fixture(scope="module")
def dlib_descriptors(dlib_module: ModuleType, dlib_weights_path: Path, chip_batch: ImageRGB) -> Embeddings:
    """dlib's own ``compute_face_descriptor`` for every chip, ``(N, 128)`` float32."""
    reference = dlib_module.face_recognition_model_v1(str(dlib_weights_path))
    return np.stack(
        [np.asarray(reference.compute_face_descriptor(chip), dtype=np.float32) for chip in chip_batch]
    )


def make_chips(count: int, seed: int = 0) -> ImageRGB:
    """Builder: ``count`` random uint8 chips of the right shape."""
    return np.random.default_rng(seed).integers(0, 256, (count, 150, 150, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- parity


def test_matches_dlib_descriptor(
    embedder: DlibEmbedder, chip_batch: ImageRGB, dlib_descriptors: Embeddings
) -> None:
    # given real chips and dlib's descriptors for them
    # when
    ours = embedder.embed(chip_batch)
    # then
    difference = float(np.abs(ours - dlib_descriptors).max())
    assert difference < PARITY_MAX_ABS_DIFF, f"max abs difference to dlib is {difference:.2e}"


def test_batch_matches_single(embedder: DlibEmbedder, chip_batch: ImageRGB) -> None:
    # given real chips (batch_size=2 also splits this batch into several forward passes)
    # when
    batched = embedder.embed(chip_batch)
    singles = np.concatenate(
        [embedder.embed(chip_batch[index : index + 1]) for index in range(len(chip_batch))]
    )
    # then
    difference = float(np.abs(batched - singles).max())
    assert difference < BATCH_VS_SINGLE_MAX_ABS_DIFF, f"batch and single differ by {difference:.2e}"


def test_same_person_is_close_and_different_people_far(embedder: DlibEmbedder, chip_batch: ImageRGB) -> None:
    # given chips of Obama (twice) and Biden
    descriptors = dict(zip(CHIP_IMAGES, embedder.embed(chip_batch), strict=True))
    # when
    same = float(np.linalg.norm(descriptors["obama.jpg"] - descriptors["obama2.jpg"]))
    different = float(np.linalg.norm(descriptors["obama.jpg"] - descriptors["biden.jpg"]))
    # then
    assert same < SAME_PERSON_DISTANCE, f"obama vs obama2 distance {same:.3f} should be below 0.6"
    assert different > SAME_PERSON_DISTANCE, f"obama vs biden distance {different:.3f} should be above 0.6"


# ----------------------------------------------------------------------------- embedder contract


def test_output_shape_and_dtype(embedder: DlibEmbedder) -> None:
    # given three chips
    chips = make_chips(3)
    # when
    descriptors = embedder.embed(chips)
    # then
    assert descriptors.shape == (3, 128), f"shape {descriptors.shape}"
    assert descriptors.dtype == np.float32, f"dtype {descriptors.dtype}"
    assert np.isfinite(descriptors).all(), "descriptors must be finite"
    norms = np.linalg.norm(descriptors, axis=1)
    assert not np.allclose(norms, 1.0), "dlib descriptors are not L2-normalised"


def test_empty_batch(embedder: DlibEmbedder) -> None:
    # given no chips
    chips = np.empty((0, 150, 150, 3), dtype=np.uint8)
    # when
    descriptors = embedder.embed(chips)
    # then
    assert descriptors.shape == (0, 128) and descriptors.dtype == np.float32, f"got {descriptors.shape}"


@pytest.mark.parametrize(
    "chips",
    [
        np.zeros((1, 160, 160, 3), np.uint8),  # wrong chip size
        np.zeros((1, 150, 150, 3), np.float32),  # wrong dtype
        np.zeros((150, 150, 3), np.uint8),  # a single chip without the batch axis
        np.zeros((1, 150, 150, 4), np.uint8),  # RGBA
    ],
)
def test_wrong_chips_raise(embedder: DlibEmbedder, chips: np.ndarray) -> None:
    # given chips of the wrong shape or dtype
    # when / then
    with pytest.raises(ValueError, match="expected"):
        embedder.embed(chips)


def test_attributes_and_lazy_load(dlib_weights_path: Path) -> None:
    # given a fresh embedder (constructing it reads nothing)
    model = DlibEmbedder(dlib_weights_path, device="cpu", cache_dir=None, flip_average=True)
    assert not model.is_loaded, "the constructor must not load weights"
    # when
    descriptors = model.embed(make_chips(1))
    # then
    assert model.is_loaded, "embed loads on first use"
    assert descriptors.shape == (1, 128), f"shape {descriptors.shape}"
    assert (model.name, model.dim, model.chip_size_px) == ("dlib_resnet", 128, 150), "class attributes"
    assert model.version == "dlib_resnet_v1+flip", f"version {model.version}"
    assert model.distance_threshold == pytest.approx(0.6), "threshold comes from the file"


def test_rejects_bad_batch_size() -> None:
    # given / when / then
    with pytest.raises(ValueError, match="batch_size"):
        DlibEmbedder(device="cpu", batch_size=0)


def test_missing_weights_raise(tmp_path: Path) -> None:
    # given a weights path with no file
    model = DlibEmbedder(tmp_path / "missing.dat", device="cpu", cache_dir=tmp_path)
    # when / then
    with pytest.raises(ModelLoadError, match="cannot read"):
        model.load()


def test_flip_average_differs_but_stays_close(
    embedder: DlibEmbedder, dlib_weights_path: Path, chip_batch: ImageRGB
) -> None:
    # given an embedder that averages each chip with its mirror image
    flipping = DlibEmbedder(dlib_weights_path, device="cpu", cache_dir=None, flip_average=True)
    # when
    plain = embedder.embed(chip_batch)
    flipped = flipping.embed(chip_batch)
    # then
    distances = np.linalg.norm(plain - flipped, axis=1)
    assert (distances > 1e-4).all(), f"flip averaging should change the descriptors, distances {distances}"
    assert (distances < FLIP_MAX_DISTANCE).all(), f"flip averaging moved descriptors too far: {distances}"
    assert embedder.version == "dlib_resnet_v1", f"version {embedder.version}"


# ----------------------------------------------------------------------------- weight cache


def test_weight_cache_is_written_and_reused(
    dlib_weights_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an empty cache directory and a first embedder that converts the .dat file
    chips = make_chips(2, seed=1)
    first = DlibEmbedder(dlib_weights_path, device="cpu", cache_dir=tmp_path)
    first_descriptors = first.embed(chips)
    cached = list(tmp_path.glob("*.pt"))
    assert len(cached) == 1, f"expected one cache file, found {cached}"
    assert not list(tmp_path.glob("*.tmp")), "no temporary files are left behind"

    # when a second embedder loads with parsing disabled
    def fail_to_parse(path: Path) -> DlibNetwork:
        raise AssertionError(f"the cache should have been used instead of parsing {path}")

    monkeypatch.setattr(dlib_resnet, "load_network", fail_to_parse)
    second = DlibEmbedder(dlib_weights_path, device="cpu", cache_dir=tmp_path)
    second_descriptors = second.embed(chips)

    # then
    np.testing.assert_array_equal(second_descriptors, first_descriptors, err_msg="cached weights differ")


def test_corrupt_cache_is_replaced(dlib_weights_path: Path, tmp_path: Path) -> None:
    # given a cache file with garbage in it
    DlibEmbedder(dlib_weights_path, device="cpu", cache_dir=tmp_path).load()
    (cache_path,) = tmp_path.glob("*.pt")
    cache_path.write_bytes(b"not a torch file")
    # when
    model = DlibEmbedder(dlib_weights_path, device="cpu", cache_dir=tmp_path)
    model.load()
    # then
    assert model.is_loaded, "a corrupt cache falls back to converting the .dat file"
    assert cache_path.stat().st_size > 1_000_000, "the corrupt cache file is rewritten"


# ----------------------------------------------------------------------------- building blocks


def test_add_zero_padded_aligns_top_left() -> None:
    # given a (1, 2, 2, 2) tensor and a larger-channel, smaller-spatial (1, 3, 1, 1) tensor
    first = torch.arange(8, dtype=torch.float32).reshape(1, 2, 2, 2)
    second = torch.full((1, 3, 1, 1), 100.0)
    # when
    total = add_zero_padded(first, second)
    # then
    expected = F.pad(first, (0, 0, 0, 0, 0, 1)) + F.pad(second, (0, 1, 0, 1))
    assert total.shape == (1, 3, 2, 2), f"shape {tuple(total.shape)}"
    assert torch.equal(total, expected), f"got {total}"


def test_fold_affine_is_exact() -> None:
    # given a convolution followed by a per-channel affine
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    gamma = rng.standard_normal(4).astype(np.float32)
    beta = rng.standard_normal(4).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    # when
    folded_weight, folded_bias = fold_affine(weight, bias, gamma, beta)
    # then
    separate = F.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias)) * torch.from_numpy(gamma).view(
        1, 4, 1, 1
    ) + torch.from_numpy(beta).view(1, 4, 1, 1)
    folded = F.conv2d(x, torch.from_numpy(folded_weight), torch.from_numpy(folded_bias))
    assert torch.allclose(separate, folded, atol=1e-5), "folding changed the result"


def test_convert_rejects_other_networks(network: DlibNetwork) -> None:
    # given the parsed network with one layer (the stem's relu) removed
    broken = dataclasses.replace(network, nodes=network.nodes[:2] + network.nodes[3:])
    # when / then
    with pytest.raises(ModelLoadError, match="not dlib's face-recognition ResNet"):
        convert_network(broken)


def test_spec_round_trips_json(network: DlibNetwork) -> None:
    # given the spec built from the file
    spec, _ = convert_network(network)
    # when
    restored = type(spec).from_json(spec.to_json())
    # then
    assert restored == spec, "the cached spec must equal the parsed one"
    assert len(spec.blocks) == 14, f"{len(spec.blocks)} residual blocks"
    assert sum(block.shortcut_pool is not None for block in spec.blocks) == 4, "four down blocks"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_cuda_matches_fp32(
    embedder: DlibEmbedder, dlib_weights_path: Path, chip_batch: ImageRGB, tmp_path: Path
) -> None:
    # given the CPU float32 embedder and a CUDA (half precision) one
    cuda = DlibEmbedder(dlib_weights_path, device="cuda", cache_dir=tmp_path)
    # when
    distances = np.linalg.norm(cuda.embed(chip_batch) - embedder.embed(chip_batch), axis=1)
    # then
    assert (distances < FP16_MAX_DISTANCE).all(), f"fp16 descriptors drift from fp32 by {distances}"


def test_other_weights_get_a_version_of_their_own(tmp_path: Path) -> None:
    # given a copy of dlib's model with one weight byte changed (still a valid model file)
    import face_recognition_models

    original = Path(face_recognition_models.face_recognition_model_location())
    data = bytearray(original.read_bytes())
    data[len(data) - 20_000] ^= 0x01  # a low mantissa bit of a float32 weight near the end (fc layer)
    altered = tmp_path / "altered.dat"
    altered.write_bytes(bytes(data))
    # when both are loaded
    published = DlibEmbedder(weights_path=original, device="cpu")
    other = DlibEmbedder(weights_path=altered, device="cpu")
    published.load()
    other.load()
    # then only the published file keeps the published version name
    assert published.version == "dlib_resnet_v1"
    assert other.version.startswith("dlib_resnet_") and other.version != published.version


def test_loading_twice_keeps_the_loaded_network(dlib_weights_path: Path, tmp_path: Path) -> None:
    # given an embedder loaded from a copy of the weights, and the copy then removed
    copy = tmp_path / "dlib.dat"
    copy.write_bytes(dlib_weights_path.read_bytes())
    embedder = DlibEmbedder(weights_path=copy, device="cpu")
    embedder.load()
    copy.unlink()
    # when it is asked to load again (the worker's start-up loads a pipeline already loaded)
    embedder.load()
    # then it kept its network instead of reading the file again, and still embeds
    assert embedder.embed(make_chips(1)).shape == (1, 128)
