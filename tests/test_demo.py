"""The demo (`make demo`'s main job) runs on package images only and gets every view right."""

from __future__ import annotations

from vigil.config import Settings
from vigil.demo import altered_views, run_demo, sample_images


def test_sample_images_ship_in_packages() -> None:
    images = sample_images()
    assert set(images) == {"Eileen Collins", "Grace Hopper"}
    assert all(image.ndim == 3 and image.shape[2] == 3 for image in images.values())


def test_demo_recognises_every_altered_view(settings: Settings) -> None:
    # when the demo runs
    report = run_demo(settings)
    # then both people are found in the originals and every altered view is matched to the right person
    views_per_person = len(altered_views(sample_images()["Grace Hopper"]))
    assert len(report.comparisons) == 2 * views_per_person
    assert report.all_correct, [(c.person, c.view, c.best_match, c.distances) for c in report.comparisons]
    for comparison in report.comparisons:
        own = comparison.distances[comparison.person]
        other = min(d for name, d in comparison.distances.items() if name != comparison.person)
        assert own < 0.6 < other, f"{comparison.person} / {comparison.view}: own {own:.3f}, other {other:.3f}"
