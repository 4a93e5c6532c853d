"""Fine-tuning a copy of the backbone's last blocks for age and gender (issue #6's fallback).

The head on frozen embeddings (:mod:`trainer.attribute_training`) reads 128 numbers that
were trained to tell people apart, not to tell their age. When that is not enough, the
issue's fallback is to fine-tune the backbone's last residual blocks for the attribute
task, on a *separate copy*: the identity network, and so every stored template, stays as it is.

:class:`AttributeTail` is that copy: the last ``blocks`` residual blocks of the dlib ResNet,
mean-pooled, then one linear layer to the same three outputs as the head (age, log sigma,
female logit; :func:`vigil.models.attributes.outputs_from_raw`), trained with the same loss.
The frozen part of the network runs once per face (and once per mirror image): its
activations at the tail's input are kept in memory as float16, and each epoch trains the
tail on one of the two at random (mirroring is the augmentation). Predictions average the
face and its mirror image, as the embedder does.

:class:`AttributeTail` itself, and running it, live in :mod:`vigil.models.attribute_tail` (the
service needs them without the training code). ``vigil train attributes --fine-tune-blocks N``
stores a tail as an ``attribute_tail`` artifact; ``vigil bench attributes --fine-tune-blocks N``
measures one without storing it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from trainer.attribute_training import AttributeLoss, calibration_split, check_labels, spread_scale_for
from vigil.models.attribute_tail import AttributeTail, mirror_averaged, trunk
from vigil.models.dlib_resnet import DlibResNet
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

HEAD_LEARNING_RATE_FACTOR = 10.0
"""The new output layer starts from scratch; the copied blocks only need nudging."""
_PREDICT_BATCH = 128


@dataclass(frozen=True)
class TailTrainingConfig:
    """How to fine-tune (defaults: the figures in BENCHMARKS.md).

    Attributes:
        blocks: How many of the backbone's last residual blocks to copy and train.
        epochs: Passes over the training faces.
        learning_rate: Peak learning rate of the copied blocks (the output layer's is 10×).
        weight_decay: AdamW weight decay.
        dropout: Dropout before the output layer.
        batch_size: Faces per step.
        seed: Seeds initialisation, dropout, mirroring and batch order.
    """

    blocks: int = 4
    epochs: int = 15
    learning_rate: float = 3e-4
    weight_decay: float = 1e-2
    dropout: float = 0.3
    batch_size: int = 64
    seed: int = 0


@dataclass(frozen=True)
class TrainedTail:
    """A fine-tuned tail and how training went.

    Attributes:
        tail: The tail, in evaluation mode.
        epoch_losses: Mean training loss of each epoch.
        seconds: Training wall time (not counting the frozen part's activations).
        calibration_faces: Training faces kept aside to calibrate the age range (not trained on).
        spread_scale: The factor the predicted spread was scaled by.
    """

    tail: AttributeTail
    epoch_losses: list[float]
    seconds: float
    calibration_faces: int
    spread_scale: float


def trunk_activations(
    backbone: DlibResNet, chips: ImageRGB, start_block: int, batch_size: int = 32
) -> torch.Tensor:
    """The frozen network's activations at the input of block ``start_block``, for each chip and its mirror.

    Args:
        backbone: The dlib ResNet (any device; the result is on the CPU).
        chips: ``(N, 150, 150, 3)`` uint8 aligned chips.
        start_block: The first block the tail trains.
        batch_size: Chips per forward pass.

    Returns:
        ``(N, 2, C, H, W)`` float16: index 0 the chip, 1 its mirror image.
    """
    batches = [
        trunk(backbone, chips[start : start + batch_size], start_block).half()
        for start in tqdm(range(0, len(chips), batch_size), desc="frozen blocks", unit="batch")
    ]
    return torch.cat(batches)


def train_attribute_tail(
    backbone: DlibResNet,
    activations: torch.Tensor,
    ages: npt.NDArray[np.float32],
    female: npt.NDArray[np.bool_],
    config: TailTrainingConfig,
) -> TrainedTail:
    """Fine-tune a tail on ``(N, 2, C, H, W)`` activations (:func:`trunk_activations`) and their labels.

    Raises:
        ValueError: The arrays disagree in length, or there are fewer than 2 faces.
    """
    check_labels(len(activations), ages, female)
    started = time.monotonic()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    age_targets = torch.from_numpy(ages.astype(np.float32))
    female_targets = torch.from_numpy(female.astype(np.float32))
    calibration, fit = calibration_split(len(activations), generator)
    calibration_count = len(calibration)
    tail = AttributeTail(backbone, config.blocks, config.dropout)
    epoch_losses = _fit(tail, activations, age_targets, female_targets, fit, config, generator)
    tail.eval()
    if calibration_count:
        with torch.no_grad():
            tail.spread_scale.fill_(
                spread_scale_for(mirror_averaged(tail, activations[calibration]), age_targets[calibration])
            )
    seconds = time.monotonic() - started
    logger.info(
        "fine-tuned %d blocks in %.0f s: loss %.4f -> %.4f",
        config.blocks,
        seconds,
        epoch_losses[0],
        epoch_losses[-1],
    )
    return TrainedTail(tail, epoch_losses, seconds, calibration_count, float(tail.spread_scale))


def predict_tail(tail: AttributeTail, activations: torch.Tensor) -> npt.NDArray[np.float32]:
    """``(N, 3)`` outputs (age, log sigma, female logit) of each face, averaged with its mirror image's."""
    tail.eval()
    with torch.no_grad():
        outputs = [
            mirror_averaged(tail, activations[start : start + _PREDICT_BATCH])
            for start in range(0, len(activations), _PREDICT_BATCH)
        ]
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 3), np.float32)


def _fit(
    tail: AttributeTail,
    activations: torch.Tensor,
    ages: torch.Tensor,
    female: torch.Tensor,
    fit: torch.Tensor,
    config: TailTrainingConfig,
    generator: torch.Generator,
) -> list[float]:
    """Train ``tail`` in place on the faces ``fit``; returns each epoch's mean loss."""
    rate = config.learning_rate
    optimiser = torch.optim.AdamW(
        [
            {"params": tail.blocks.parameters(), "lr": rate},
            {"params": tail.out.parameters(), "lr": rate * HEAD_LEARNING_RATE_FACTOR},
        ],
        weight_decay=config.weight_decay,
    )
    batches = math.ceil(len(fit) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=[rate, rate * HEAD_LEARNING_RATE_FACTOR],
        total_steps=config.epochs * batches,
        pct_start=0.15,
    )
    loss_fn = AttributeLoss()
    epoch_losses: list[float] = []
    tail.train()
    for epoch in tqdm(range(config.epochs), desc="fine-tuning attribute blocks", unit="epoch"):
        order = fit[torch.randperm(len(fit), generator=generator)]
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            mirrored = torch.randint(0, 2, (len(batch),), generator=generator)
            inputs = activations[batch, mirrored].float().contiguous(memory_format=torch.channels_last)
            loss = loss_fn(tail(inputs), ages[batch], female[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        epoch_losses.append(total / len(fit))
        logger.debug("epoch %d: loss %.4f", epoch, epoch_losses[-1])
    return epoch_losses
