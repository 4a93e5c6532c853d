"""Embedding heads: the runtime module, the losses, training on real faces, calibration and promotion.

The real-data tests use 60 LFW people with 4+ images (the first 4 images of each): 30 to
train on and 30 others, disjoint, for the held-out pairs (all 180 genuine pairs and 180
seeded impostor pairs, dealt round-robin into 10 folds). Their 240 backbone embeddings are
computed once per session into the session's cache, which the CLI runs then read.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.calibration import (
    Calibration,
    GallerySizeRule,
    IdentificationCalibration,
    VerificationCalibration,
)
from tests.conftest import LFW, dlib_settings, require
from trainer.embedding_cache import EmbeddedImages, embed_dataset
from trainer.head_calibration import (
    ImpostorScores,
    QuantileMap,
    cosine_scores,
    map_calibration,
    sample_impostor_pairs,
)
from trainer.head_training import TrainedHead, TrainingConfig, evaluate_head, train_head
from trainer.losses import LOSS_NAMES, PKBatchSampler, batch_hard_triplet_loss, make_loss
from trainer.pairs import Pair
from trainer.train_head import (
    PeopleDataset,
    TrainHeadOptions,
    check_disjoint,
    evaluation_pairs,
    people_in_pairs,
    publish_head,
    read_people_dataset,
    run_train_head,
)
from vigil.artifacts import ArtifactRegistry
from vigil.config import Settings
from vigil.errors import DatasetError, ModelLoadError
from vigil.models.head import (
    HEAD_KINDS,
    EmbeddingHead,
    apply_head,
    head_from_bytes,
    head_space_version,
    head_to_bytes,
)
from vigil.models.pipeline import FacePipeline
from vigil.typing import HeadLoss

PEOPLE_EACH = 30
IMAGES_PER_PERSON = 4
ACCURACY_TOLERANCE = 1 / 180
"""How much held-out accuracy a head may lose on the 360 test pairs: 2 pairs (half a point),
the noise of 10 folds of 36. The backbone gets 358 right (99.44 %); the linear heads trained
here keep that or miss one pair more (99.17 %)."""


@dataclass(frozen=True)
class HeadData:
    """The real training and held-out data, embedded."""

    train_dir: Path
    dataset: PeopleDataset
    train_embeddings: np.ndarray
    pairs_file: Path
    pairs: list[Pair]
    eval_embedded: EmbeddedImages


# ----------------------------------------------------------------------------- builders


def lfw_people(count: int, images: int) -> list[tuple[str, list[Path]]]:
    """The first ``count`` LFW people (by name) with at least ``images`` images, and their first ones."""
    root = require(LFW / "lfw-deepfunneled")
    chosen: list[tuple[str, list[Path]]] = []
    for folder in sorted(root.iterdir()):
        files = sorted(folder.glob("*.jpg"))
        if len(files) >= images:
            chosen.append((folder.name, files[:images]))
            if len(chosen) == count:
                break
    return chosen


def link_dataset(folder: Path, people: dict[str, list[Path]]) -> Path:
    """A folder-per-person dataset of symbolic links (the shared data is never copied)."""
    for name, images in people.items():
        (folder / name).mkdir(parents=True)
        for image in images:
            (folder / name / image.name).symlink_to(image)
    return folder


def write_pairs(path: Path, people: list[tuple[str, list[Path]]], seed: int = 0) -> Path:
    """Every genuine pair of ``people`` and as many seeded impostor pairs, alternating (plain format)."""
    genuine = [
        (images[i], images[j])
        for _, images in people
        for i in range(len(images))
        for j in range(i + 1, len(images))
    ]
    random = np.random.default_rng(seed)
    impostor: list[tuple[Path, Path]] = []
    while len(impostor) < len(genuine):
        first, second = random.choice(len(people), 2, replace=False)
        impostor.append((people[first][1][random.integers(4)], people[second][1][random.integers(4)]))
    lines = []
    for (a, b), (c, d) in zip(genuine, impostor, strict=True):
        lines.append(f"{a.parent.name}/{a.name} {b.parent.name}/{b.name} 1")
        lines.append(f"{c.parent.name}/{c.name} {d.parent.name}/{d.name} 0")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_calibration(version: str = "backbone") -> Calibration:
    """A calibration with identification rules (two sizes) and a verification threshold."""
    return Calibration(
        calibration_id="synthetic",
        created_at="2026-01-01T00:00:00+00:00",
        embedder_version=version,
        identification=[
            IdentificationCalibration(
                threshold=0.75,
                margin=0.03,
                target_fpir=0.01,
                fpir=0.01,
                dir=0.9,
                misidentification_rate=0.001,
                gallery_identities=100,
                known_probes=100,
                unknown_probes=100,
                by_gallery_size=[
                    GallerySizeRule(gallery_identities=1, threshold=0.7, margin=0.0, fpir=0.01, dir=0.95),
                    GallerySizeRule(gallery_identities=10, threshold=0.72, margin=0.01, fpir=0.01, dir=0.93),
                ],
            )
        ],
        verification=VerificationCalibration(
            threshold=0.8, target_far=0.001, far=0.001, tar=0.9, genuine_pairs=10, impostor_pairs=1000
        ),
    )


def random_head(seed: int) -> EmbeddingHead:
    """A deliberately bad head: a linear projection with random weights."""
    head = EmbeddingHead("linear")
    with torch.no_grad():
        head.projection.weight.copy_(torch.randn(128, 128, generator=torch.Generator().manual_seed(seed)))  # type: ignore[union-attr]
    return head.eval()


def run_vigil(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIGIL_")}
    env["VIGIL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def head_data(
    settings: Settings, dlib_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> HeadData:
    """dlib's embeddings of LFW people: the head studies (BENCHMARKS.md) are on its backbone, whose
    30 training people still break the triplet margin (SFace's already keep it: loss 0 from the start)."""
    settings, pipeline = dlib_settings(settings), dlib_pipeline
    people = lfw_people(2 * PEOPLE_EACH, IMAGES_PER_PERSON)
    train_people, eval_people = people[0::2], people[1::2]
    folder = tmp_path_factory.mktemp("head_data")
    train_dir = link_dataset(folder / "train", dict(train_people))
    pairs_file = write_pairs(folder / "pairs.txt", eval_people)
    dataset = read_people_dataset(train_dir)
    train_embedded = embed_dataset(settings, pipeline, dataset.paths, train_dir, use_cache=True)
    pairs = evaluation_pairs(pairs_file, LFW / "lfw-deepfunneled")
    eval_paths = [path for pair in pairs for path in (pair.path_a, pair.path_b)]
    eval_embedded = embed_dataset(settings, pipeline, eval_paths, LFW / "lfw-deepfunneled", use_cache=True)
    return HeadData(train_dir, dataset, train_embedded.embeddings, pairs_file, pairs, eval_embedded)


@pytest.fixture
def cli_home(settings: Settings, head_data: HeadData, tmp_path: Path) -> Path:
    """A fresh VIGIL_HOME holding the session's caches (weights and embeddings), no artifacts."""
    home = tmp_path / "home"
    shutil.copytree(settings.cache_dir, home / "cache")
    return home


# ----------------------------------------------------------------------------- the head module


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_untrained_head_is_identity_on_the_unit_sphere(kind: str) -> None:
    # given an untrained head and vectors of all sorts of norms
    head = EmbeddingHead(kind)  # type: ignore[arg-type]
    scales = np.linspace(0.1, 10, 50, dtype=np.float32)[:, None]
    vectors = np.random.default_rng(0).normal(size=(50, 128)).astype(np.float32) * scales

    # when the head maps them
    mapped = apply_head(head, vectors)

    # then it returns the normalised inputs
    expected = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert mapped.dtype == np.float32 and mapped.shape == (50, 128)
    np.testing.assert_allclose(mapped, expected, atol=1e-6, err_msg="an untrained head must be the identity")
    assert apply_head(head, np.zeros((0, 128), np.float32)).shape == (0, 128), "empty batch"


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_head_bytes_round_trip(kind: str) -> None:
    # given a head with non-trivial weights
    head = EmbeddingHead(kind)  # type: ignore[arg-type]
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    vectors = np.random.default_rng(1).normal(size=(8, 128)).astype(np.float32)

    # when it is written and read back
    data = head_to_bytes(head)
    loaded = head_from_bytes(data)

    # then it maps embeddings the same, and its space is named by the file's hash
    assert loaded.kind == kind and not loaded.training
    np.testing.assert_array_equal(apply_head(loaded, vectors), apply_head(head, vectors))
    assert head_space_version("dlib_resnet_v1+flip", data).startswith("dlib_resnet_v1+flip+head-")
    assert head_space_version("b", data) != head_space_version("b", head_to_bytes(random_head(0)))


def _torch_bytes(payload: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _head_dict(**changes: object) -> dict[str, object]:
    good = EmbeddingHead("linear")
    raw: dict[str, object] = {
        "format": "vigil-head",
        "format_version": 1,
        "kind": "linear",
        "in_dim": 128,
        "out_dim": 128,
        "hidden": 256,
        "state_dict": good.state_dict(),
    }
    return raw | changes


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        # not a torch file at all
        (b"this is not a head", "corrupt"),
        # a real head file cut short
        (head_to_bytes(EmbeddingHead("linear"))[:200], "corrupt"),
        # a torch file of something else
        (_torch_bytes({"weights": torch.zeros(3)}), "not a Vigil head file"),
        # a head file from a future Vigil
        (_torch_bytes(_head_dict(format_version=2)), "format version 2"),
        # an unknown kind
        (_torch_bytes(_head_dict(kind="transformer")), "malformed"),
        # weights of another shape than recorded
        (_torch_bytes(_head_dict(in_dim=64)), "do not fit"),
    ],
    ids=["garbage", "truncated", "foreign", "future-version", "unknown-kind", "wrong-shape"],
)
def test_bad_head_files_raise_model_load_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ModelLoadError, match=fragment):
        head_from_bytes(data)


# ----------------------------------------------------------------------------- losses and sampler


def test_pk_sampler_draws_p_people_by_k_images() -> None:
    # given 10 people with 2 to 11 images, and one person with a single image
    labels = np.concatenate([np.full(count, person) for person, count in enumerate(range(2, 12))] + [[99]])

    # when an epoch is drawn with P=4, K=3
    batches = list(PKBatchSampler(labels, 4, 3, seed=0))

    # then every batch holds 4 distinct people, 3 rows each, never the single-image person
    assert len(batches) == int(np.ceil((labels.size - 1) / 12)), "about one pass over the images"
    for batch in batches:
        people = labels[batch].reshape(4, 3)
        assert (people == people[:, :1]).all() and len(set(people[:, 0])) == 4, people
        assert 99 not in people


def test_batch_hard_triplet_uses_the_hardest_pairs() -> None:
    # given two people on a circle: anchor 0's farthest positive is row 1, nearest negative row 2
    angles = torch.tensor([0.0, 0.5, 0.6, 1.5])
    embeddings = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    labels = torch.tensor([0, 0, 1, 1])

    # when the loss is computed with margin 0.2
    loss = batch_hard_triplet_loss(embeddings, labels, margin=0.2)

    # then it is the mean over anchors of max(0, d(hardest positive) - d(hardest negative) + margin)
    distance = torch.cdist(embeddings, embeddings)
    expected = torch.stack(
        [
            torch.relu(distance[0, 1] - distance[0, 2] + 0.2),
            torch.relu(distance[1, 0] - distance[1, 2] + 0.2),
            torch.relu(distance[2, 3] - distance[2, 1] + 0.2),
            torch.relu(distance[3, 2] - distance[3, 1] + 0.2),
        ]
    ).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_each_loss_decreases_and_keeps_held_out_accuracy(head_data: HeadData, loss: HeadLoss) -> None:
    # given real backbone embeddings of 30 people, and held-out pairs of 30 others
    config = TrainingConfig(loss=loss, kind="linear", epochs=30, seed=0)

    # when a head is trained
    trained = train_head(head_data.train_embeddings, head_data.dataset.labels, config)
    evaluation = evaluate_head(head_data.eval_embedded, head_data.pairs, trained.head)

    # then the loss went down and held-out accuracy did not
    assert trained.loss_after < trained.loss_before, f"{loss}: {trained.loss_before} -> {trained.loss_after}"
    assert len(trained.epoch_losses) == 30
    base, head = evaluation.base.accuracy_mean, evaluation.head.accuracy_mean
    assert head >= base - ACCURACY_TOLERANCE, f"{loss}: held-out accuracy {base:.4f} -> {head:.4f}"


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown loss 'arcface'"):
        make_loss("arcface")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- calibration


def test_quantile_mapping_keeps_impostor_rates_on_synthetic_scores() -> None:
    # given impostor scores whose head-space scores are an affine map of the base ones: h = 2b - 0.9
    base = np.random.default_rng(0).normal(0.5, 0.1, 200_000)
    impostors = ImpostorScores(base, 2 * base - 0.9)

    # when the base calibration is mapped
    mapped = map_calibration(make_calibration(), impostors, embedder_version="backbone+head-abc")

    # then each threshold lands on the affine image of the base one, margins scale by 2
    rules = mapped.identification[0]
    assert rules.threshold == pytest.approx(2 * 0.75 - 0.9, abs=1e-3)
    assert rules.margin == pytest.approx(2 * 0.03, abs=1e-3)
    assert [(r.threshold, r.margin) for r in rules.by_gallery_size] == [
        pytest.approx((2 * 0.7 - 0.9, 0.0), abs=1e-3),
        pytest.approx((2 * 0.72 - 0.9, 0.02), abs=1e-3),
    ]
    assert mapped.verification is not None
    assert mapped.verification.threshold == pytest.approx(2 * 0.8 - 0.9, abs=1e-3)
    # and the impostor accept rate at each head threshold is the base one at the base threshold
    assert np.mean(impostors.head >= rules.threshold) == pytest.approx(np.mean(base >= 0.75), abs=1e-5)
    assert mapped.embedder_version == "backbone+head-abc" and mapped.data["base_calibration"] == "synthetic"


def test_quantile_mapping_matches_the_analytic_quantiles() -> None:
    # given independent samples: base impostors N(0.5, 0.1), head impostors N(-0.1, 0.2)
    random = np.random.default_rng(1)
    impostors = ImpostorScores(random.normal(0.5, 0.1, 400_000), random.normal(-0.1, 0.2, 400_000))
    mapping = QuantileMap(impostors)

    # when thresholds 1 to 3 standard deviations above the base mean are mapped
    for sigmas in (1.0, 2.0, 3.0):
        # then each lands within sampling error of the same quantile of the head distribution
        assert mapping.threshold(0.5 + 0.1 * sigmas) == pytest.approx(-0.1 + 0.2 * sigmas, abs=0.01), sigmas
    assert mapping.extrapolated == 0

    # and a threshold beyond every sampled impostor is extrapolated by the spread ratio, and counted
    top = float(impostors.base.max())
    assert mapping.threshold(top + 0.01) == pytest.approx(float(impostors.head.max()) + 0.02, abs=1e-3)
    assert mapping.extrapolated == 1


def test_impostor_pairs_are_cross_person() -> None:
    # given 6 images of 3 people
    identities = np.array(["a", "a", "b", "b", "c", "c"])

    # when all pairs fit, and when they must be sampled
    everything = sample_impostor_pairs(identities, max_pairs=100)
    sampled = sample_impostor_pairs(identities, max_pairs=5, seed=3)

    # then all 12 cross-person pairs are enumerated once, and samples are cross-person too
    assert len(everything[0]) == 12
    for first, second in (everything, sampled):
        assert (identities[first] != identities[second]).all()
    assert len(sampled[0]) == 5
    with pytest.raises(ValueError, match="two people"):
        sample_impostor_pairs(np.array(["a", "a"]))
    scores = cosine_scores(np.eye(3, dtype=np.float32) * 5, np.array([0, 1]), np.array([0, 2]))
    np.testing.assert_allclose(scores, [1.0, 0.0])


# ----------------------------------------------------------------------------- promotion


def test_a_head_that_loses_accuracy_is_not_promoted(
    head_data: HeadData, settings: Settings, tmp_path: Path
) -> None:
    # given a deliberately bad head (random weights) and an empty home
    home_settings = settings.model_copy(update={"home": tmp_path})
    trained = TrainedHead(
        random_head(0), loss_before=1.0, loss_after=0.5, epoch_losses=[1.0, 0.5], seconds=0.1
    )
    options = TrainHeadOptions(dataset=head_data.train_dir, force=False)

    def publish(force: bool) -> tuple[bool, bool, str]:
        outcome = publish_head(
            home_settings,
            replace(options, force=force),
            dataset=head_data.dataset,
            trained=trained,
            pairs=head_data.pairs,
            pairs_file=head_data.pairs_file,
            eval_embedded=head_data.eval_embedded,
            backbone="dlib_resnet_v1+flip",
        )
        return outcome.refused, outcome.promoted, outcome.artifact.notes

    # when it is published without --force
    refused, promoted, notes = publish(force=False)

    # then it is stored but refused, and nothing is in force
    registry = ArtifactRegistry(tmp_path)
    assert refused and not promoted and notes == ""
    assert registry.current("head") is None, "a worse head must not be promoted"
    assert len(registry.list("head")) == 1

    # when it is published with --force, then it is promoted and the override recorded
    refused, promoted, notes = publish(force=True)
    assert not refused and promoted and "--force" in notes
    current = registry.current("head")
    assert current is not None and current.notes == notes
    assert float(current.metrics["head_accuracy_mean"]) < float(current.metrics["base_accuracy_mean"])


def test_cli_refuses_then_forces_a_worse_head(head_data: HeadData, cli_home: Path, tmp_path: Path) -> None:
    # given a training set whose folders mix people (every label wrong), so the head learns to
    # confuse them (held-out accuracy 99.4 % -> 95.3 % here)
    names = head_data.dataset.names
    by_person = {name: sorted((head_data.train_dir / name).iterdir()) for name in names}
    mixed = {
        f"mix_{index:02d}": [by_person[names[(index + j) % len(names)]][j].resolve() for j in range(4)]
        for index in range(len(names))
    }
    mixed_dir = link_dataset(tmp_path / "mixed", mixed)
    args = [
        "train", "head", "--dataset", str(mixed_dir), "--loss", "contrastive", "--kind", "residual",
        "--epochs", "300", "--eval-pairs", str(head_data.pairs_file),
        "--eval-images", str(LFW / "lfw-deepfunneled"), "--json", str(tmp_path / "report.json"),
    ]  # fmt: skip

    # when it is trained without --force
    refused = run_vigil(*args, home=cli_home)

    # then the exit status is 1, one line gives both accuracies, and nothing is promoted
    assert refused.returncode == 1, refused.stderr
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("vigil: error:")]
    assert "head not promoted" in line and line.count("%") == 2, line
    registry = ArtifactRegistry(cli_home)
    assert registry.current("head") is None
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["refused"] and report["head"]["accuracy_mean"] < report["base"]["accuracy_mean"]

    # when it is trained again with --force, then it is promoted with the override in its notes
    forced = run_vigil(*args, "--force", home=cli_home)
    assert forced.returncode == 0, forced.stderr
    current = registry.current("head")
    assert current is not None and "--force" in current.notes
    assert {"head.pt", "calibration.json", "loss.png", "report.md"} <= {
        p.name for p in current.folder.iterdir()
    }
    calibration = json.loads(current.file("calibration.json").read_text())
    assert calibration["embedder_version"] == current.data["head_space"]
    assert head_from_bytes(current.file("head.pt").read_bytes()).kind == "residual"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("layout", "fragment"),
    [
        # the dataset folder does not exist
        (None, "not found"),
        # every person has a single image
        ({"alice": 1, "bob": 1, "carol": 1}, "0 people with 2 or more images (3 with fewer were skipped"),
        # only one person has two images
        ({"alice": 2, "bob": 1}, "1 people with 2 or more images"),
    ],
    ids=["missing-folder", "one-image-each", "one-person"],
)
def test_bad_datasets_are_refused(
    settings: Settings, head_data: HeadData, tmp_path: Path, layout: dict[str, int] | None, fragment: str
) -> None:
    # given a dataset folder of that layout (images are links to a real face)
    dataset = tmp_path / "people"
    face = head_data.dataset.paths[0]
    for name, count in (layout or {}).items():
        (dataset / name).mkdir(parents=True)
        for index in range(count):
            (dataset / name / f"{index}.jpg").symlink_to(face)
    options = TrainHeadOptions(
        dataset=dataset, eval_pairs=head_data.pairs_file, eval_images=LFW / "lfw-deepfunneled"
    )

    # when training is asked for, then it fails with one clear line before any embedding
    with pytest.raises(DatasetError, match=re.escape(fragment)) as raised:
        run_train_head(settings, options)
    assert "\n" not in str(raised.value)


def test_training_people_must_not_be_evaluation_people(settings: Settings, head_data: HeadData) -> None:
    # given all of LFW as the training set, which holds the held-out pairs' people
    images = LFW / "lfw-deepfunneled"
    options = TrainHeadOptions(dataset=images, eval_pairs=head_data.pairs_file, eval_images=images)

    # when training is asked for, then it is refused, pointing at --exclude-pairs
    with pytest.raises(DatasetError, match="--exclude-pairs"):
        run_train_head(settings, options)

    # and excluding the people of the pairs file leaves a disjoint training set
    excluded = people_in_pairs(head_data.pairs_file)
    dataset = read_people_dataset(images, exclude=excluded)
    assert len(excluded) == PEOPLE_EACH and dataset.excluded == PEOPLE_EACH
    check_disjoint(dataset, head_data.pairs, head_data.pairs_file)


def test_one_fold_pairs_are_dealt_into_ten_folds(head_data: HeadData, tmp_path: Path) -> None:
    # given an LFW View 1 style file (a single fold) of 10 matched and 10 mismatched pairs
    names = sorted({pair.path_a.parent.name for pair in head_data.pairs})[:11]
    matched = [f"{name} 1 2" for name in names[:10]]
    mismatched = [f"{names[i]} 1 {names[i + 1]} 3" for i in range(10)]
    pairs_file = tmp_path / "pairsDevTest.txt"
    pairs_file.write_text("\n".join(["10", *matched, *mismatched]) + "\n", encoding="utf-8")

    # when it is read for evaluation
    pairs = evaluation_pairs(pairs_file, LFW / "lfw-deepfunneled")

    # then the pairs are spread over 10 folds, each with both classes
    assert sorted({pair.fold for pair in pairs}) == list(range(10))
    assert all({pair.same for pair in pairs if pair.fold == fold} == {True, False} for fold in range(10))


def test_cli_rejects_an_unknown_loss(tmp_path: Path) -> None:
    result = run_vigil("train", "head", "--dataset", str(tmp_path), "--loss", "arcface", home=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'arcface'" in result.stderr, result.stderr
