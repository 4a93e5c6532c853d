"""Settings for faces the gallery does not know: what is kept of them, and how they are grouped."""

from __future__ import annotations

from pydantic import Field

from vigil.config.base import VigilModel

# Unknown passers-by are kept 30 days by default: the stated choice, documented in README
# ("What Vigil keeps, and for how long") and in the field's description.
DEFAULT_UNKNOWN_RETENTION_S = 30 * 24 * 3600.0
# A year at most: nobody should keep strangers' faces longer by a typo (`1e20`, `.inf`).
MAX_UNKNOWN_RETENTION_S = 365 * 24 * 3600.0


class UnknownsConfig(VigilModel):
    """Unknown tracks of the stream, kept as embeddings (images only if opted in) for `vigil unknowns`."""

    keep: bool = Field(
        True,
        description=(
            "Keep the best embeddings of each unknown track (with camera, time and event id) so `vigil "
            "unknowns cluster` can group repeat strangers. Off: nothing is kept of unknown faces."
        ),
    )
    keep_images: bool = Field(
        False,
        description=(
            "Also keep a small JPEG of each kept unknown track's best face (at most 128 px a side, in "
            "Redis beside its embeddings, expiring with them), so `vigil unknowns list --images DIR` can "
            "show who a cluster is. While on, workers attach such a crop to every unmatched face they "
            "publish, and the results stream keeps the last `streamer.bus.max_results` results (no "
            "expiry): those crops are not covered by retention or erasure. Off: no image of an unknown "
            "face is stored or sent (privacy)."
        ),
    )
    retention_s: float = Field(
        DEFAULT_UNKNOWN_RETENTION_S,
        gt=0.0,
        le=MAX_UNKNOWN_RETENTION_S,
        description=(
            "Seconds an unknown track's embeddings (biometric data of passers-by who never agreed to "
            "anything), and the clusters made of them, are kept; Redis expires them after this. Default "
            "30 days, a deliberate choice: long enough for `vigil unknowns cluster` to group a stranger "
            "who comes back weekly or monthly, short enough that passers-by are forgotten within a month. "
            "At most 365 days. Lower it (or set `keep: false`) where that is too long."
        ),
    )
    per_track: int = Field(
        5,
        ge=1,
        le=50,
        description=(
            "Embeddings kept per unknown track: its best faces by detection score times face size "
            "(sharper, larger faces embed more reliably)."
        ),
    )
    cluster_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=(
            "Average cosine similarity (higher = stricter) at which `vigil unknowns cluster` joins two "
            "groups of tracks (average linkage over the tracks' mean embeddings). Unset: the calibrated "
            "threshold for a gallery of one person, i.e. the 1:1 same-person rule at indexer.target_fpir."
        ),
    )
