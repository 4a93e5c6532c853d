"""Vigil: streaming face recognition.

The shared core: configuration, image loading, the face models (detector, aligner,
embedders) and the errors every layer raises.
"""

__version__ = "0.1.0"
