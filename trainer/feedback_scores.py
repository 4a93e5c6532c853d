"""Corrections given with ``vigil feedback`` as scored pairs, for ``vigil calibrate --with-feedback``.

Each kept correction is a face and a person: ``--is NAME`` says the face is them (a genuine
pair), ``--not NAME`` that it is not (an impostor pair, and the hardest kind there is: the
service took that face for them). A correction's score is what the service compares: the
face's cosine similarity to the person's best template of the same embedder, leaving out
the template the correction itself created.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.corrections import Corrections, feedback_pairs
from indexer.gallery import Gallery
from indexer.search import normalise
from vigil.typing import FloatArray


@dataclass(frozen=True)
class FeedbackScores:
    """The scores of the kept corrections of one embedder version.

    Attributes:
        genuine: Scores of ``--is`` corrections.
        impostor: Scores of ``--not`` corrections.
        unscored: Corrections of people with no other template of this embedder to compare with.
    """

    genuine: FloatArray
    impostor: FloatArray
    unscored: int


def feedback_scores(gallery: Gallery, embedder_version: str) -> FeedbackScores:
    """Score every correction of ``embedder_version`` against its person's best template.

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    template_ids, owners, embeddings = gallery.templates(embedder_version)
    owner_of = np.array(owners, dtype=object)
    units = normalise(embeddings) if len(template_ids) else embeddings
    genuine: list[float] = []
    impostor: list[float] = []
    unscored = 0
    for pair in feedback_pairs(Corrections(gallery), embedder_version):
        theirs = owner_of == pair.identity_id
        if pair.same:  # its item is the template made from this face; a negative's id is another counter
            theirs &= template_ids != pair.item_id
        if not theirs.any():
            unscored += 1
            continue
        score = float((units[theirs] @ normalise(pair.embedding[None])[0]).max())
        (genuine if pair.same else impostor).append(score)
    return FeedbackScores(np.array(genuine, np.float64), np.array(impostor, np.float64), unscored)
