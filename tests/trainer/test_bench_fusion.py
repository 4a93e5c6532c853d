"""`vigil bench fusion`: the z-score fusion of two embedders, on synthetic scores and a real LFW slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.search import normalise
from tests.trainer.conftest import cli_error
from tests.trainer.test_bench_identify import _small_lfw
from trainer.bench_fusion import MemberScores, _fuse, run_fusion_bench
from trainer.bench_identify import EmbeddedSplit
from trainer.pairs import Pair
from vigil.config import Settings

# Two folds of three same-person and three different-people pairs, over the people of _small_lfw.
PAIRS_TXT = """2 3
Tony_Blair 1 2
Serena_Williams 1 2
Vladimir_Putin 1 2
Tony_Blair 3 Serena_Williams 3
Ariel_Sharon 1 Hugo_Chavez 1
Vladimir_Putin 3 Adam_Ant 1
Ariel_Sharon 2 3
Hugo_Chavez 2 3
Tony_Blair 3 4
Aaron_Eckhart 1 Abba_Eban 1
Hugo_Chavez 4 Serena_Williams 4
Ariel_Sharon 4 Vladimir_Putin 4
"""


def _member(name: str, seed: int, pair_scores: np.ndarray) -> MemberScores:
    rng = np.random.default_rng(seed)
    gallery, known, unknown = (normalise(rng.normal(size=(rows, 8)).astype(np.float32)) for rows in (3, 4, 2))
    split = EmbeddedSplit(["a", "b", "c"], gallery, ["a", "a", "b", "c"], known, unknown)
    return MemberScores(name, pair_scores, split, ms_per_face=2.0 if seed else 3.0)


def test_fusion_sums_z_scores_and_its_embedding_ranks_as_that_sum() -> None:
    # given two models' scores on two same-person and two different-people pairs, with impostor
    # spreads 0.1 and 0.02 (a model whose scores bunch up must weigh more)
    pairs = [Pair(Path("x"), Path("y"), same, 1) for same in (True, True, False, False)]
    first = _member("first", 0, np.array([0.9, 0.5, 0.3, 0.1]))
    second = _member("second", 1, np.array([0.95, 0.99, 0.92, 0.96]))
    # when fused
    fused = _fuse([first, second], pairs)
    # then each pair's score is the sum of the two models' z-scores against their impostor pairs
    z_first = (first.pair_scores - 0.2) / 0.1
    z_second = (second.pair_scores - 0.94) / 0.02
    np.testing.assert_allclose(fused.pair_scores, z_first + z_second, rtol=1e-5, atol=1e-9)
    # and the fused embedding's cosine is an increasing function of the same z-score sum
    fused_cosine = normalise(fused.split.known) @ normalise(fused.split.gallery).T
    z_sum = (first.split.known @ first.split.gallery.T) / 0.1 + (
        second.split.known @ second.split.gallery.T
    ) / 0.02
    order = np.argsort(z_sum, axis=None)
    assert np.all(np.diff(fused_cosine.ravel()[order]) >= -1e-6)
    # and fusing costs both models' time
    assert fused.ms_per_face == 5.0 and fused.name == "fusion of first and second"


@pytest.mark.slow
def test_small_fusion_bench_reports_both_models_and_their_fusion(settings: Settings, tmp_path: Path) -> None:
    # given a small LFW-shaped folder with a pairs file of two folds
    data = tmp_path / "lfw"
    _small_lfw(data / "lfw-deepfunneled")
    (data / "pairs.txt").write_text(PAIRS_TXT, encoding="utf-8")
    # when the configured model (SFace) is fused with dlib's
    result = run_fusion_bench(settings, data, tmp_path / "fusion.json", "dlib_resnet", use_cache=False)
    # then one row per model and one for the fusion, each with every figure
    figures = json.loads((tmp_path / "fusion.json").read_text())
    models = [row["model"] for row in figures["rows"]]
    assert models == [
        "sface_2021dec",
        "dlib_resnet_v1+flip",
        "fusion of sface_2021dec and dlib_resnet_v1+flip",
    ]
    for row in figures["rows"]:
        # 15 known probes of 5 well-photographed people: nearly all are named right
        assert row["rank1"] >= 0.8, row
        assert 0.5 <= row["lfw_accuracy_mean"] <= 1.0 and row["ms_per_face"] > 0, row
    sface, dlib, fusion = figures["rows"]
    assert fusion["ms_per_face"] == pytest.approx(sface["ms_per_face"] + dlib["ms_per_face"], abs=0.02)
    assert "fusion of" in result.summary
    assert "| fusion of sface_2021dec and dlib_resnet_v1+flip |" in (tmp_path / "fusion.md").read_text()


def test_fusing_a_model_with_itself_is_a_one_line_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = cli_error(capsys, "bench", "fusion", "--with", "sface", "--json", str(home / "fusion.json"))
    assert "fuse sface with another backend" in error
