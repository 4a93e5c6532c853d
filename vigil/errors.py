"""Every error Vigil raises on purpose.

    VigilError
    ├── ConfigError          a setting is missing, malformed or out of range
    ├── ImageError           an image cannot be read or has an unusable shape
    ├── ModelLoadError       weights are missing, corrupt or do not match the model
    ├── DatasetError         a benchmark or training dataset is missing or malformed
    ├── GalleryError         the gallery store rejected an operation
    ├── EventError           an event id is malformed or unknown, or its face is no longer kept
    ├── RedisUnavailableError  Redis cannot be reached or the embedded server cannot start
    └── StreamError          a camera/file source cannot be opened or read

Each message says what is wrong and what to do about it, in one line, so the CLI can
print it as is.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base class of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """A setting is missing, malformed or out of range."""


class ImageError(VigilError):
    """An image cannot be read or has a shape Vigil cannot use.

    Attributes:
        source: The file path (or a short description) of the offending image.
    """

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class ModelLoadError(VigilError):
    """Model weights are missing, corrupt or do not fit the model."""


class DatasetError(VigilError):
    """A benchmark or training dataset is missing or malformed."""


class GalleryError(VigilError):
    """The gallery store rejected an operation."""


class EventError(VigilError):
    """An event id is malformed or unknown, or the face behind the event is no longer kept."""


class CalibrationError(VigilError):
    """A calibration file is missing, corrupt or for another embedder."""


class RedisUnavailableError(VigilError):
    """Redis cannot be reached, or the embedded Redis server cannot be started."""


class StreamError(VigilError):
    """A camera or file source cannot be opened or read.

    Attributes:
        camera: The name of the camera the error belongs to.
    """

    def __init__(self, message: str, camera: str = "") -> None:
        super().__init__(f"camera {camera!r}: {message}" if camera else message)
        self.camera = camera
