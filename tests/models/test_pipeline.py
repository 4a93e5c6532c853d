"""The whole face pipeline on real faces: detection → alignment → embedding."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.calibration import read_calibration, shipped_calibration_path
from tests.conftest import LFW, people_image, require
from vigil.config import IndexerConfig
from vigil.image import load_image
from vigil.models.pipeline import FacePipeline

# A handful of fixed LFW pairs (View 2, fold 1 of pairs.txt): same person, then different people.
SAME_PERSON = [
    ("Abel_Pacheco", 1, "Abel_Pacheco", 4),
    ("Akhmed_Zakayev", 1, "Akhmed_Zakayev", 3),
    ("Amber_Tamblyn", 1, "Amber_Tamblyn", 2),
    ("Anders_Fogh_Rasmussen", 1, "Anders_Fogh_Rasmussen", 3),
]
DIFFERENT_PEOPLE = [
    ("AJ_Cook", 1, "Marsha_Thomason", 1),
    ("Aaron_Sorkin", 2, "Frank_Cassell", 1),
    ("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1),
    ("Abdel_Madi_Shabneh", 1, "Giancarlo_Fisichella", 1),
]


def _lfw_embedding(pipeline: FacePipeline, name: str, number: int) -> np.ndarray:
    path = require(LFW / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg")
    face = pipeline.central_face(load_image(path))
    assert face is not None, f"no face found in {path}"
    return face.embedding


def cosine(first: np.ndarray, second: np.ndarray) -> float:
    """Embeddings carry direction only (the Embedder contract): compare by cosine."""
    return float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))


@pytest.fixture(scope="module")
def same_person(pipeline: FacePipeline) -> float:
    """The cosine at or above which two faces are one person: the rule of the embedder's shipped
    calibration for a one-person gallery."""
    calibration = read_calibration(shipped_calibration_path(pipeline.embedder.version))
    threshold, _ = calibration.for_target(IndexerConfig().target_fpir).rule_for(1)
    return threshold


def test_same_person_pairs_are_closer_than_different_people(
    pipeline: FacePipeline, same_person: float
) -> None:
    # given fixed LFW pairs of the same person and of different people
    def similarity(pair: tuple[str, int, str, int]) -> float:
        first = _lfw_embedding(pipeline, pair[0], pair[1])
        second = _lfw_embedding(pipeline, pair[2], pair[3])
        return cosine(first, second)

    same = [similarity(pair) for pair in SAME_PERSON]
    different = [similarity(pair) for pair in DIFFERENT_PEOPLE]
    # then every same-person pair is closer than every different-people pair, and the calibrated rule holds
    assert min(same) > max(different), f"same {np.round(same, 3)} vs different {np.round(different, 3)}"
    assert min(same) >= same_person > max(different), (
        f"same {np.round(same, 3)} vs different {np.round(different, 3)}"
    )


def test_same_person_across_photos_and_resolutions(pipeline: FacePipeline, same_person: float) -> None:
    # given Obama in three photos and at 240p, and Biden
    embeddings = {
        name: pipeline.analyze([people_image(name)])[0][0].embedding
        for name in ("obama.jpg", "obama2.jpg", "obama-240p.jpg", "biden.jpg")
    }
    # then Obama matches Obama and not Biden
    for other in ("obama2.jpg", "obama-240p.jpg"):
        assert cosine(embeddings["obama.jpg"], embeddings[other]) >= same_person, other
    assert cosine(embeddings["obama.jpg"], embeddings["biden.jpg"]) < same_person


def test_two_people_give_two_distinct_embeddings(pipeline: FacePipeline, same_person: float) -> None:
    # given the photo of Obama and Biden together
    faces = pipeline.analyze([people_image("two_people.jpg")])[0]
    obama = pipeline.analyze([people_image("obama.jpg")])[0][0].embedding
    # then each face has its own embedding, and exactly one of them is Obama
    assert len(faces) == 2
    matches = [cosine(face.embedding, obama) >= same_person for face in faces]
    assert sorted(matches) == [False, True], f"matches to Obama: {matches}"


def test_image_without_face_gives_no_faces(pipeline: FacePipeline) -> None:
    blank = np.full((200, 300, 3), 90, np.uint8)
    assert pipeline.analyze([blank]) == [[]]
    assert pipeline.central_face(blank) is None


def test_batched_analysis_matches_one_by_one(pipeline: FacePipeline) -> None:
    # given frames of different sizes, one without a face
    frames = [people_image("obama.jpg"), np.zeros((100, 100, 3), np.uint8), people_image("two_people.jpg")]
    # when analysed together and separately
    together = pipeline.analyze(frames)
    alone = [pipeline.analyze([frame])[0] for frame in frames]
    # then the faces and embeddings agree
    assert [len(faces) for faces in together] == [len(faces) for faces in alone] == [1, 0, 2]
    for batch_faces, single_faces in zip(together, alone, strict=True):
        for first, second in zip(batch_faces, single_faces, strict=True):
            # fp16 on CUDA rounds at ~1e-4 near |x| = 0.2; fp32 on CPU agrees far tighter
            tolerance = 2e-3 if pipeline.embedder.device.type == "cuda" else 1e-4  # type: ignore[attr-defined]
            np.testing.assert_allclose(first.embedding, second.embedding, atol=tolerance)


def test_grayscale_photo_still_recognised(pipeline: FacePipeline, same_person: float) -> None:
    # given a grayscale copy of a colour photo
    colour = people_image("obama.jpg")
    gray = np.repeat(colour.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    # then the same person is found in it
    [face_colour] = pipeline.analyze([colour])[0]
    [face_gray] = pipeline.analyze([gray])[0]
    assert cosine(face_colour.embedding, face_gray.embedding) >= same_person


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_rescaled_photo_gives_nearby_embedding(
    pipeline: FacePipeline, same_person: float, factor: float
) -> None:
    import cv2

    image = people_image("obama.jpg")
    resized = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    [original] = pipeline.analyze([image])[0]
    [scaled] = pipeline.analyze([resized])[0]
    # then the embedding hardly moves: far closer than the same-person rule asks
    similarity = cosine(original.embedding, scaled.embedding)
    assert similarity > (1 + same_person) / 2, f"cosine {similarity:.3f}"
