"""Corrections from `vigil feedback` scored as calibration pairs (`vigil calibrate --with-feedback`)."""

from __future__ import annotations

import pytest

from indexer.corrections import apply_feedback
from indexer.records import NewTemplate
from tests.conftest import RedisBackend
from tests.indexer.test_corrections import VERSION, near, unit
from trainer.feedback_scores import feedback_scores


@pytest.mark.redis
def test_each_correction_is_scored_against_the_persons_best_other_template(backend: RedisBackend) -> None:
    gallery = backend.gallery()
    # given Ann with two templates (one her best match for the faces below), Bob with one
    ann = unit(1)
    gallery.enroll("Ann", [NewTemplate(VERSION, ann), NewTemplate(VERSION, unit(2))])
    gallery.enroll("Bob", [NewTemplate(VERSION, unit(3))])
    # and corrections: a face that is Ann (0.90 to her template), two that are not (0.85, 0.70),
    # one of another embedder, and Cy's, whose only template is the one the correction made
    apply_feedback(gallery, "e1", "is", "Ann", VERSION, near(ann, 0.90, 11))
    apply_feedback(gallery, "e2", "not", "Ann", VERSION, near(ann, 0.85, 12))
    apply_feedback(gallery, "e3", "not", "Ann", VERSION, near(ann, 0.70, 13))
    apply_feedback(gallery, "e4", "not", "Ann", "other-embedder", near(ann, 0.99, 14))
    gallery.enroll("Cy", [NewTemplate("other-embedder", unit(5))])
    apply_feedback(gallery, "e5", "is", "Cy", VERSION, unit(6))
    # when scored
    scores = feedback_scores(gallery, VERSION)
    # then the --is face scores against her enrolment template, not the template made from
    # itself (which would be 1.0); the --not faces are impostor pairs; the other embedder's
    # correction is left out; Cy's has nothing to compare with
    assert scores.genuine == pytest.approx([0.90], abs=1e-5)
    assert sorted(scores.impostor) == pytest.approx([0.70, 0.85], abs=1e-5)
    assert scores.unscored == 1


@pytest.mark.redis
def test_a_gallery_without_corrections_adds_nothing(backend: RedisBackend) -> None:
    gallery = backend.gallery()
    gallery.enroll("Ann", [NewTemplate(VERSION, unit(1))])
    scores = feedback_scores(gallery, VERSION)
    assert scores.genuine.size == scores.impostor.size == scores.unscored == 0
