"""HTTP API settings (``vigil serve``)."""

from __future__ import annotations

from pydantic import Field

from vigil.config.base import VigilModel


class ApiConfig(VigilModel):
    """Where the HTTP API listens and what it accepts."""

    enabled: bool = Field(
        False, description="Also serve the API from `vigil run` (`vigil serve` serves it alone)."
    )
    host: str = Field(
        "127.0.0.1",
        description=(
            "Address to listen on. The default is this machine only; `0.0.0.0` exposes the API to the "
            "network (every route but health, readiness and the schema needs an API key: "
            "`vigil api-keys create`)."
        ),
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    max_upload_bytes: int = Field(
        10_000_000, ge=1_000, le=200_000_000, description="Largest uploaded image, in bytes (larger: 413)."
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=10_000,
        le=178_000_000,  # Pillow refuses larger images (its decompression-bomb limit) whatever this says
        description="Largest uploaded image in width × height pixels, read from its header before decoding.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API from other sites (CORS); empty: none (off).",
    )
