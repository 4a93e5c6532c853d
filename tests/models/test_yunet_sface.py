"""YuNet and SFace held to OpenCV's own implementation (FaceDetectorYN, FaceRecognizerSF) on real faces.

Both runtimes are checked: OpenCV's DNN engine (the CPU default) and our PyTorch port of the
graphs (``vigil.models.onnx_graph``, batched, the GPU path).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import LFW, SHARED_DATA, people_image, require
from tests.models.onnx_models import installed_models_dir, onnx_settings
from vigil.config import Settings
from vigil.config.detector import DetectorConfig, OnnxRuntime
from vigil.image import load_image
from vigil.models.model_files import SFACE, YUNET
from vigil.models.pipeline import FacePipeline
from vigil.models.sface import SFaceEmbedder
from vigil.models.yunet import LARGE_FACE_PASS_PX, YunetDetector
from vigil.typing import ImageRGB

RUNTIMES: list[OnnxRuntime] = ["opencv", "torch"]
PHOTOS = [
    ("face_recognition/obama.jpg", 1),  # one frontal face
    ("face_recognition/biden.jpg", 1),  # one face in a tall portrait
    ("face_recognition/two_people.jpg", 2),  # two faces side by side
    ("facenet_pytorch/multiface.jpg", None),  # a group: as many as OpenCV finds
]


def _photo(relative: str) -> ImageRGB:
    return load_image(require(SHARED_DATA / "people" / relative))


def _opencv_faces(image: ImageRGB, config: DetectorConfig) -> np.ndarray:
    """OpenCV's FaceDetectorYN on the same file with the same thresholds: ``(N, 15)`` rows."""
    path = str(installed_models_dir() / YUNET.name)
    size = (image.shape[1], image.shape[0])
    detector = cv2.FaceDetectorYN.create(path, "", size, config.score_cutoff, config.nms_iou, 5000)
    _, faces = detector.detect(np.ascontiguousarray(image[..., ::-1]))
    return np.zeros((0, 15), np.float32) if faces is None else faces


@pytest.fixture(scope="module", params=RUNTIMES)
def onnx_pipeline(request: pytest.FixtureRequest, settings: Settings) -> FacePipeline:
    pipeline = FacePipeline.from_settings(onnx_settings(settings, request.param))
    pipeline.load()
    return pipeline


@pytest.mark.parametrize(("photo", "expected_faces"), PHOTOS)
def test_yunet_matches_opencv(onnx_pipeline: FacePipeline, photo: str, expected_faces: int | None) -> None:
    # given a real photo and OpenCV's own YuNet on it
    image = _photo(photo)
    detector = onnx_pipeline.detector
    assert isinstance(detector, YunetDetector)
    reference = _opencv_faces(image, detector.config)
    # when our detector makes one pass over it at its own scale, as OpenCV does
    [faces] = detector.detect_pass(image[None], detector.config.min_face_size_px)
    # then it finds the same faces (boxes, landmarks and scores), best score first
    if expected_faces is not None:
        assert len(faces) == expected_faces, f"{photo}: {len(faces)} faces"
    assert len(faces) == len(reference), f"{photo}: ours {len(faces)}, OpenCV {len(reference)}"
    reference = reference[np.argsort(-reference[:, 14], kind="stable")]
    corners = np.concatenate([reference[:, :2], reference[:, :2] + reference[:, 2:4]], axis=1)
    height, width = image.shape[:2]
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0, width)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0, height)
    np.testing.assert_allclose(faces.boxes_xyxy, corners, atol=0.05, err_msg=photo)
    np.testing.assert_allclose(faces.landmarks.reshape(-1, 10), reference[:, 4:14], atol=0.05, err_msg=photo)
    np.testing.assert_allclose(faces.scores, reference[:, 14], atol=1e-4, err_msg=photo)


def test_yunet_finds_a_face_too_large_for_one_pass(onnx_pipeline: FacePipeline) -> None:
    # given a 2048 px photo whose face is some 600 px wide, beyond what YuNet's coarsest stride scores well
    image = _photo("facenet_pytorch/test_images/angelina_jolie/1.jpg")
    detector = onnx_pipeline.detector
    assert isinstance(detector, YunetDetector) and max(image.shape[:2]) > LARGE_FACE_PASS_PX
    [one_pass] = detector.detect_pass(image[None], detector.config.min_face_size_px)
    # when detected
    [faces] = detector.detect([image])
    # then the large-face pass finds it (one pass alone does not), in the frame's own pixels
    assert len(one_pass) == 0, f"one pass already finds it: {one_pass.scores}"
    assert len(faces) == 1, f"{len(faces)} faces, scores {faces.scores}"
    width, height = faces.boxes_xyxy[0, 2:] - faces.boxes_xyxy[0, :2]
    assert 450 < width < 700 and 650 < height < 950, (width, height)
    points = faces.landmarks[0]
    assert points[0, 0] < points[2, 0] < points[1, 0], "eyes and nose in the frame's pixels"


def test_two_passes_keep_one_box_per_face(onnx_pipeline: FacePipeline) -> None:
    # given a large photo whose face both passes find
    image = _photo("face_recognition/obama.jpg")
    assert max(image.shape[:2]) > LARGE_FACE_PASS_PX
    # then it is one detection, not two
    assert len(onnx_pipeline.detector.detect([image])[0]) == 1


def test_yunet_landmarks_follow_the_detection_contract(onnx_pipeline: FacePipeline) -> None:
    # given frontal portraits
    for name in ("obama.jpg", "biden.jpg", "lin-manuel-miranda.png"):
        [faces] = onnx_pipeline.detector.detect([people_image(name)])
        points = faces.landmarks[0]
        # then the image-left eye comes first, then the right eye, the nose, the left and right mouth corner
        assert points[0, 0] < points[2, 0] < points[1, 0], f"{name}: eyes/nose order {points[:3]}"
        assert points[3, 0] < points[4, 0], f"{name}: mouth corners {points[3:]}"
        assert max(points[0, 1], points[1, 1]) < points[2, 1] < min(points[3, 1], points[4, 1]), name


def test_sface_matches_opencv(onnx_pipeline: FacePipeline) -> None:
    # given OpenCV's alignCrop + feature on the faces OpenCV's YuNet finds
    recognizer = cv2.FaceRecognizerSF.create(str(installed_models_dir() / SFACE.name), "")
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "lin-manuel-miranda.png"):
        image = people_image(name)
        bgr = np.ascontiguousarray(image[..., ::-1])
        reference_face = _opencv_faces(image, DetectorConfig(backend="yunet"))[0]
        reference_chip = recognizer.alignCrop(bgr, reference_face)
        reference = recognizer.feature(reference_chip)[0]
        # when our aligner cuts the chip from the same landmarks and SFace embeds it
        landmarks = reference_face[4:14].reshape(1, 5, 2)
        chip = onnx_pipeline.aligner.align(image, landmarks)
        embedding = onnx_pipeline.embedder.embed(chip)[0]
        # then the chip is OpenCV's (to rounding) and so is the embedding
        difference = np.abs(chip[0].astype(int) - reference_chip[..., ::-1].astype(int))
        assert difference.max() <= 2, f"{name}: chips differ by up to {difference.max()}"
        cosine = embedding @ reference / np.linalg.norm(embedding) / np.linalg.norm(reference)
        assert cosine > 0.9999, f"{name}: cosine to OpenCV's embedding {cosine:.6f}"


def test_batch_matches_single_and_runtimes_agree(settings: Settings) -> None:
    # given both runtimes, and three equally sized frames
    frames = [people_image("obama-480p.jpg"), people_image("obama-480p.jpg")[:, ::-1].copy()]
    frames.append(np.zeros_like(frames[0]))
    pipelines = {
        runtime: FacePipeline.from_settings(onnx_settings(settings, runtime)) for runtime in RUNTIMES
    }
    # when each runs the batch, and each frame alone
    batched = {runtime: pipeline.analyze(frames) for runtime, pipeline in pipelines.items()}
    single = [pipelines["torch"].analyze([frame])[0] for frame in frames]
    # then every run finds one face in each photo and none in the blank frame, with the same embeddings
    for runs in (batched["opencv"], batched["torch"], single):
        assert [len(faces) for faces in runs] == [1, 1, 0]
    for index in range(2):
        reference = batched["opencv"][index][0]
        for other in (batched["torch"][index][0], single[index][0]):
            np.testing.assert_allclose(other.box_xyxy, reference.box_xyxy, atol=0.05)
            cosine = other.embedding @ reference.embedding
            cosine /= np.linalg.norm(other.embedding) * np.linalg.norm(reference.embedding)
            assert cosine > 0.9999, f"frame {index}: cosine {cosine:.6f}"


def test_flip_average_is_its_own_space(settings: Settings) -> None:
    # given SFace with and without mirror averaging
    plain = FacePipeline.from_settings(onnx_settings(settings, flip_average=False))
    flipped = FacePipeline.from_settings(onnx_settings(settings, flip_average=True))
    image = people_image("obama.jpg")
    # when the same face is embedded by both
    [[face_plain]] = plain.analyze([image])
    [[face_flipped]] = flipped.analyze([image])
    # then the versions differ (templates never mix) and the embeddings are close but not equal
    assert (plain.embedder.version, flipped.embedder.version) == ("sface_2021dec", "sface_2021dec+flip")
    cosine = face_plain.embedding @ face_flipped.embedding
    cosine /= np.linalg.norm(face_plain.embedding) * np.linalg.norm(face_flipped.embedding)
    assert 0.9 < cosine < 0.99999, f"cosine {cosine:.6f}"


def test_min_face_size_drops_small_faces(settings: Settings) -> None:
    # given a photo whose face is about 60 px wide at 240p
    image = people_image("obama-240p.jpg")
    detector_settings = onnx_settings(settings)
    strict = detector_settings.detector.model_copy(update={"min_face_size_px": 200})
    # when the minimum face size is raised above it
    found = YunetDetector(detector_settings.detector, installed_models_dir()).detect([image])[0]
    none = YunetDetector(strict, installed_models_dir()).detect([image])[0]
    # then the face is found by default and dropped when too small
    assert len(found) == 1 and len(none) == 0, (len(found), len(none))
    assert found.boxes_xyxy[0, 2] - found.boxes_xyxy[0, 0] < 200


def test_sface_separates_lfw_pairs(onnx_pipeline: FacePipeline) -> None:
    # given fixed LFW pairs (View 2, fold 1): the same person, then different people
    same = [("Abel_Pacheco", 1, 4), ("Akhmed_Zakayev", 1, 3), ("Amber_Tamblyn", 1, 2)]
    different = [("AJ_Cook", 1, "Marsha_Thomason", 1), ("Aaron_Sorkin", 2, "Frank_Cassell", 1)]

    def embed(name: str, number: int) -> np.ndarray:
        path = require(LFW / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg")
        face = onnx_pipeline.central_face(load_image(path))
        assert face is not None, f"no face in {path}"
        return face.embedding / np.linalg.norm(face.embedding)

    same_scores = [float(embed(name, a) @ embed(name, b)) for name, a, b in same]
    different_scores = [float(embed(a, i) @ embed(b, j)) for a, i, b, j in different]
    # then every same-person pair is more similar than any different pair, by a clear margin
    assert min(same_scores) > max(different_scores) + 0.2, (same_scores, different_scores)


def test_embedder_refuses_wrong_chips(settings: Settings) -> None:
    embedder = SFaceEmbedder(onnx_settings(settings).embedder, installed_models_dir())
    with pytest.raises(ValueError, match=r"\(N, 112, 112, 3\) uint8"):
        embedder.embed(np.zeros((1, 150, 150, 3), np.uint8))
    assert embedder.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 128)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(settings: Settings) -> None:
    # given the torch runtime on the GPU and OpenCV on the CPU
    on_cpu = FacePipeline.from_settings(onnx_settings(settings, "opencv"))
    gpu_settings = onnx_settings(settings, "torch")
    gpu_settings = gpu_settings.model_copy(
        update={
            "detector": gpu_settings.detector.model_copy(update={"device": "cuda"}),
            "embedder": gpu_settings.embedder.model_copy(update={"device": "cuda"}),
        }
    )
    on_gpu = FacePipeline.from_settings(gpu_settings)
    image = people_image("two_people.jpg")
    # then both find the same faces with the same embeddings
    cpu_faces, gpu_faces = on_cpu.analyze([image])[0], on_gpu.analyze([image])[0]
    assert len(cpu_faces) == len(gpu_faces) == 2
    for cpu_face, gpu_face in zip(cpu_faces, gpu_faces, strict=True):
        np.testing.assert_allclose(gpu_face.box_xyxy, cpu_face.box_xyxy, atol=0.5)
        cosine = gpu_face.embedding @ cpu_face.embedding
        cosine /= np.linalg.norm(gpu_face.embedding) * np.linalg.norm(cpu_face.embedding)
        assert cosine > 0.999
