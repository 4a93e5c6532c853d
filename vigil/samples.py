"""Sample photos that ship inside PyPI packages Vigil already depends on.

The demo and the speed benchmarks use them, so neither needs data from anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vigil.image import load_image
from vigil.typing import ImageRGB


def sample_images() -> dict[str, ImageRGB]:
    """The two photos that ship with scikit-image and matplotlib, by person name."""
    import matplotlib.cbook
    import skimage.data

    # skimage.data ships without annotations; name the array type it returns.
    astronaut: Callable[[], ImageRGB] = skimage.data.astronaut
    hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {
        "Eileen Collins": np.ascontiguousarray(astronaut()),
        "Grace Hopper": load_image(hopper),
    }
