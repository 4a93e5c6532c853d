"""Training an embedding head on frozen backbone embeddings, and evaluating it against the backbone.

Training sees only the backbone's embeddings (computed once, cached): a few thousand
128-d vectors, so an epoch is milliseconds to seconds on a CPU. The optimiser is AdamW;
weight decay pulls a residual head's MLP towards zero, i.e. towards the identity map, which
keeps a head trained on little data close to the backbone. The loss's own parameters (the
Siamese scale and bias) are not decayed.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from trainer.embedding_cache import EmbeddedImages
from trainer.lfw import pair_scores
from trainer.losses import LabelArray, PKBatchSampler, make_loss
from trainer.metrics import VerificationResult, best_threshold, kfold_verification
from trainer.pairs import Pair
from vigil.errors import DatasetError
from vigil.models.head import DEFAULT_HIDDEN, EmbeddingHead, apply_head
from vigil.typing import Embeddings, FloatArray, HeadKind, HeadLoss

logger = logging.getLogger(__name__)

PEOPLE_PER_BATCH = 32
IMAGES_PER_PERSON = 4
"""P × K = 128 rows a batch: 192 genuine and 7,936 impostor pairs, hardest negatives among 124."""
LEARNING_RATE = 1e-4
"""Small on purpose: trained on 730 LFW images of 220 people (View 1 training people) and
tested on ``pairsDevTest.txt``, 1e-3 moved every head far enough from the backbone to lose
0.2 to 4.6 points of accuracy; at 1e-4 a linear head stayed within 0.3 points of it."""
WEIGHT_DECAY = 1e-2
_THRESHOLD_PAIRS = 20_000
"""Training pairs scored to start the Siamese loss's decision at the backbone's best threshold."""


@dataclass(frozen=True)
class TrainingConfig:
    """How a head is trained.

    Attributes:
        loss: ``contrastive``, ``siamese`` or ``triplet`` (see :mod:`trainer.losses`).
        kind: ``residual`` or ``linear`` (see :mod:`vigil.models.head`).
        epochs: Passes over the training images.
        people_per_batch: P of the P × K batches.
        images_per_person: K of the P × K batches.
        learning_rate: AdamW step size.
        weight_decay: AdamW decoupled weight decay of the head's weights.
        hidden: Width of the residual MLP.
        seed: Seeds the head's initialisation and the batch sampler.
    """

    loss: HeadLoss
    kind: HeadKind
    epochs: int
    people_per_batch: int = PEOPLE_PER_BATCH
    images_per_person: int = IMAGES_PER_PERSON
    learning_rate: float = LEARNING_RATE
    weight_decay: float = WEIGHT_DECAY
    hidden: int = DEFAULT_HIDDEN
    seed: int = 0


@dataclass(frozen=True)
class TrainedHead:
    """A trained head and its loss history.

    Attributes:
        head: The head, in evaluation mode.
        loss_before: Mean loss over a fixed set of batches before training.
        loss_after: The same batches' mean loss after training.
        epoch_losses: Mean training-batch loss of each epoch.
        seconds: Wall time of the training.
    """

    head: EmbeddingHead
    loss_before: float
    loss_after: float
    epoch_losses: list[float]
    seconds: float


@dataclass(frozen=True)
class HeadEvaluation:
    """Held-out verification of the backbone alone and with the head, on the same pairs.

    Attributes:
        base: 10-fold result on backbone cosine scores.
        head: 10-fold result on head cosine scores.
        head_genuine: ``(G,)`` head cosine scores of the genuine pairs.
        head_embedded: The held-out images' embeddings mapped by the head.
    """

    base: VerificationResult
    head: VerificationResult
    head_genuine: FloatArray
    head_embedded: EmbeddedImages


def train_head(embeddings: Embeddings, labels: LabelArray, config: TrainingConfig) -> TrainedHead:
    """Train a head on backbone embeddings of labelled people.

    Args:
        embeddings: ``(N, D)`` float32 backbone embeddings, any norm.
        labels: ``(N,)`` integer person label of each row.
        config: Loss, head kind and optimisation settings.

    Returns:
        The trained head with its loss before and after training.

    Raises:
        DatasetError: Fewer than two people with two or more images.
    """
    try:
        sampler = PKBatchSampler(labels, config.people_per_batch, config.images_per_person, config.seed)
        probe_batches = list(
            PKBatchSampler(labels, config.people_per_batch, config.images_per_person, config.seed + 1)
        )
    except ValueError as exc:
        raise DatasetError(f"cannot train a head: {exc}") from None
    inputs = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = EmbeddingHead(config.kind, in_dim=inputs.shape[1], hidden=config.hidden)
    loss_fn = make_loss(config.loss, threshold=_backbone_threshold(embeddings, labels, config.seed))
    optimiser = torch.optim.AdamW(
        [
            {"params": list(head.parameters()), "weight_decay": config.weight_decay},
            {"params": [p for p in loss_fn.parameters() if p.requires_grad], "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
    )

    def probe_loss() -> float:
        head.eval()
        with torch.no_grad():
            return float(
                np.mean([float(loss_fn(head(inputs[rows]), targets[rows])) for rows in probe_batches])
            )

    started = time.monotonic()
    loss_before = probe_loss()
    epoch_losses: list[float] = []
    with tqdm(
        range(config.epochs), desc=f"training {config.kind} head ({config.loss})", unit="epoch"
    ) as epochs:
        for _ in epochs:
            head.train()
            batch_losses = []
            for rows in sampler:
                optimiser.zero_grad()
                loss = loss_fn(head(inputs[rows]), targets[rows])
                loss.backward()
                optimiser.step()
                batch_losses.append(loss.item())
            epoch_losses.append(float(np.mean(batch_losses)))
            epochs.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
    loss_after = probe_loss()
    seconds = time.monotonic() - started
    logger.info(
        "trained %s head with %s loss: %.4f -> %.4f in %.1f s",
        config.kind,
        config.loss,
        loss_before,
        loss_after,
        seconds,
    )
    return TrainedHead(head.eval(), loss_before, loss_after, epoch_losses, seconds)


def evaluate_head(embedded: EmbeddedImages, pairs: list[Pair], head: EmbeddingHead) -> HeadEvaluation:
    """The verification protocol on cosine scores, backbone vs head, on the same pairs and folds.

    Args:
        embedded: Backbone embeddings of every image of ``pairs``.
        pairs: Held-out pairs with their folds (at least 2 folds).
        head: The head to compare with the backbone.

    Raises:
        DatasetError: The pairs cannot be evaluated (one class only, or a single fold).
    """
    labels = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    head_embedded = dataclasses.replace(embedded, embeddings=apply_head(head, embedded.embeddings))
    base_scores = pair_scores(embedded, pairs, "cosine")
    head_scores = pair_scores(head_embedded, pairs, "cosine")
    try:
        base = kfold_verification(base_scores, labels, folds)
        head_result = kfold_verification(head_scores, labels, folds)
    except ValueError as exc:
        raise DatasetError(f"the evaluation pairs cannot be evaluated: {exc}") from None
    return HeadEvaluation(base, head_result, head_scores[labels], head_embedded)


def loss_curve_png(epoch_losses: list[float], title: str) -> bytes:
    """A PNG of the mean training loss per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(np.arange(1, len(epoch_losses) + 1), epoch_losses, marker="o", markersize=3)
    axes.set_xlabel("Epoch")
    axes.set_ylabel("Mean training loss")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _backbone_threshold(embeddings: Embeddings, labels: LabelArray, seed: int) -> float:
    """The backbone's accuracy-maximising cosine threshold on sampled training pairs.

    Half the pairs are random (nearly all impostors), half pair an image with a random
    image of the same person (genuine, or the image itself, which is dropped).
    """
    random = np.random.default_rng(seed)
    label_array = np.asarray(labels)
    half = _THRESHOLD_PAIRS // 2
    first = random.integers(0, label_array.size, 2 * half)
    order = np.argsort(label_array, kind="stable")
    sorted_labels = label_array[order]
    starts = np.searchsorted(sorted_labels, label_array[first[:half]], side="left")
    ends = np.searchsorted(sorted_labels, label_array[first[:half]], side="right")
    same_person_rows = order[starts + (random.random(half) * (ends - starts)).astype(np.int64)]
    second = np.concatenate([same_person_rows, random.integers(0, label_array.size, half)])
    keep = first != second
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = np.einsum("ij,ij->i", unit[first[keep]], unit[second[keep]])
    same_person = label_array[first[keep]] == label_array[second[keep]]
    if same_person.all() or not same_person.any():
        return 0.9
    return float(best_threshold(scores, same_person))
