"""Still faces: a face that has not moved since an earlier frame of its camera is embedded once.

The rule (``vigil.models.still_faces``) on built chips, then the pipeline on real frames of
hamilton.mp4, where the audience sits still.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import SHARED_DATA, people_image, require
from tests.models.test_pipeline import cosine
from vigil.config.still_faces import StillFacesConfig
from vigil.models.pipeline import FacePipeline
from vigil.models.still_faces import still_face_sources
from vigil.typing import ImageRGB

SIZE_PX = 100.0
"""Every built face's box side: a landmark shift of 2 px is 2 % of it."""
CLIP = SHARED_DATA / "clips" / "hamilton.mp4"


def make_chip(seed: int, offset: int = 0) -> ImageRGB:
    """A ``(112, 112, 3)`` chip of noise, ``offset`` grey levels brighter everywhere."""
    chip = np.random.default_rng(seed).integers(20, 200, (112, 112, 3))
    return (chip + offset).astype(np.uint8)


def make_landmarks(shift_px: float = 0.0) -> np.ndarray:
    """Five landmarks of a 100 px face, all moved right by ``shift_px``."""
    points = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    return points + np.array([shift_px, 0], np.float32)


def sources_of(faces: list[tuple[ImageRGB, np.ndarray, str, int]], **config: object) -> list[int | None]:
    """``still_face_sources`` of faces given as (chip, landmarks, camera, frame)."""
    return still_face_sources(
        np.stack([chip for chip, _, _, _ in faces]),
        np.stack([landmarks for _, landmarks, _, _ in faces]),
        np.full(len(faces), SIZE_PX, np.float32),
        [camera for _, _, camera, _ in faces],
        [frame for _, _, _, frame in faces],
        StillFacesConfig.model_validate(config),
    )


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        # the same picture, one frame later: takes the first face's embedding
        ((make_chip(1), make_landmarks(), "door", 1), 0),
        # moved by 1.5 % of the face: still the same picture
        ((make_chip(1), make_landmarks(1.5), "door", 1), 0),
        # 1 grey level brighter everywhere: within the 2 of JPEG noise
        ((make_chip(1, offset=1), make_landmarks(), "door", 1), 0),
        # moved by 3 % of the face: embedded again
        ((make_chip(1), make_landmarks(3.0), "door", 1), None),
        # 5 grey levels brighter: the light changed, embedded again
        ((make_chip(1, offset=5), make_landmarks(), "door", 1), None),
        # another picture at the same place (someone else sat down): embedded
        ((make_chip(2), make_landmarks(), "door", 1), None),
        # the same picture on another camera: cameras never share embeddings
        ((make_chip(1), make_landmarks(), "yard", 1), None),
        # the same picture twice in one frame (a duplicate detection): both embedded
        ((make_chip(1), make_landmarks(), "door", 0), None),
    ],
)
def test_a_face_takes_an_earlier_faces_embedding_only_when_it_is_the_same_picture(
    second: tuple[ImageRGB, np.ndarray, str, int], expected: int | None
) -> None:
    # given a face on frame 0 of camera door, and a second face
    first = (make_chip(1), make_landmarks(), "door", 0)
    # then the second takes the first's embedding exactly when it is the same still picture
    assert sources_of([first, second]) == [None, expected]


def test_reused_embeddings_never_chain() -> None:
    # given a face drifting 1.5 % of its size per frame
    faces = [(make_chip(1), make_landmarks(1.5 * frame), "door", frame) for frame in range(4)]
    # then frame 1 reuses frame 0, frame 2 (3 % from frame 0) is embedded although it is 1.5 %
    # from frame 1, and frame 3 reuses frame 2
    assert sources_of(faces) == [None, 0, None, 2]


def test_the_closest_picture_is_the_source() -> None:
    # given two embedded faces at the same place and a third nearer the second's pixels
    faces = [
        (make_chip(1), make_landmarks(), "door", 0),
        (make_chip(1, offset=3), make_landmarks(), "door", 1),
        (make_chip(1, offset=2), make_landmarks(), "door", 2),
    ]
    # then it takes the second's embedding (1 level away), not the first's (2 levels)
    assert sources_of(faces, max_pixel_difference=2.0) == [None, None, 1]


def test_disabled_every_face_is_embedded() -> None:
    faces = [(make_chip(1), make_landmarks(), "door", frame) for frame in range(3)]
    assert sources_of(faces, enabled=False) == [None, None, None]


def test_faces_and_their_descriptions_must_agree() -> None:
    with pytest.raises(ValueError, match="same faces"):
        still_face_sources(
            np.stack([make_chip(1)]),
            np.stack([make_landmarks()]),
            np.full(1, SIZE_PX, np.float32),
            ["door", "door"],
            [0],
            StillFacesConfig(),
        )


# -- the pipeline on real frames ------------------------------------------------------------


def test_the_same_frame_twice_is_embedded_once_per_camera(pipeline: FacePipeline) -> None:
    # given a photo as two frames of camera door and one of camera yard
    photo = people_image("two_people.jpg")
    frames = [photo, photo, photo]
    detections = pipeline.detector.detect(frames)
    # when embedded as one batch
    door_0, door_1, yard_0 = pipeline.embed_detections(frames, detections, ["door", "door", "yard"])
    # then door's second frame takes the first's embeddings; yard's are its own
    assert [face.reused for face in door_0] == [False, False]
    assert [face.reused for face in door_1] == [True, True], "an unmoved face was embedded again"
    assert [face.reused for face in yard_0] == [False, False], "a camera took another camera's embedding"
    for first, again in zip(door_0, door_1, strict=True):
        np.testing.assert_array_equal(first.embedding, again.embedding)
    # and without cameras named, every face is embedded
    assert not any(face.reused for faces in pipeline.embed_detections(frames, detections) for face in faces)


def test_a_moved_face_is_embedded_afresh(pipeline: FacePipeline) -> None:
    # given a photo and a copy moved 12 px right (the landmarks move too)
    photo = people_image("obama.jpg")
    moved = cv2.warpAffine(photo, np.float32([[1, 0, 12], [0, 1, 0]]), (photo.shape[1], photo.shape[0]))
    frames = [photo, moved]
    # when embedded as two frames of one camera
    _, [moved_face] = pipeline.embed_detections(frames, pipeline.detector.detect(frames), ["door", "door"])
    # then the moved face got its own embedding, the one it gets alone
    [alone] = pipeline.analyze([moved])[0]
    assert not moved_face.reused
    np.testing.assert_allclose(moved_face.embedding, alone.embedding, atol=1e-4)


def test_a_reused_embedding_is_as_close_as_a_fresh_one_would_be(pipeline: FacePipeline) -> None:
    # given 8 consecutive frames of the clip's still audience (frames 250-257)
    capture = cv2.VideoCapture(str(require(CLIP)))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 250)
    frames = []
    for _ in range(8):
        ok, frame = capture.read()
        assert ok, "the clip ended early"
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    detections = pipeline.detector.detect(frames)
    # when embedded as one camera's batch, and every face on its own
    batch = [face for faces in pipeline.embed_detections(frames, detections, ["stage"] * 8) for face in faces]
    fresh = [face for faces in pipeline.embed_detections(frames, detections) for face in faces]
    reused = [(kept, own) for kept, own in zip(batch, fresh, strict=True) if kept.reused]
    # then some faces were still, and each reused embedding lies within the model's own
    # frame-to-frame jitter of the embedding the face would have had (cosine 0.90-0.99 on this clip)
    assert len(reused) >= len(batch) // 5, f"only {len(reused)} of {len(batch)} faces reused"
    similarities = [cosine(kept.embedding, own.embedding) for kept, own in reused]
    assert min(similarities) >= 0.85, f"a reused embedding strays: cosine {min(similarities):.3f}"


def test_scenes_must_name_every_frame(pipeline: FacePipeline) -> None:
    photo = people_image("obama.jpg")
    with pytest.raises(ValueError, match="2 scenes for 1 frames"):
        pipeline.embed_detections([photo], pipeline.detector.detect([photo]), ["door", "door"])
