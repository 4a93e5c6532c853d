"""Training and evaluating an age/gender head (:class:`vigil.models.attributes.AttributeHead`).

The head trains on backbone embeddings computed once (and cached) beforehand, so training
takes seconds on a CPU. The loss per face is

    smooth_l1(age, true age; β = 2 years) / 10
    + gaussian_nll(true age − age.detach(), sigma)  / 10
    + binary_cross_entropy(female logit, female)

After training, the spread is scaled (``AttributeHead.spread_scale``) so that the age range
holds 80 % of the true ages of ``CALIBRATION_FRACTION`` of the training faces, kept aside for
that (the head does not train on them; a few hundred faces fix an 80 % quantile to about ±3
points).

The /10 puts the age terms on the scale of the gender term (age errors are some years, the
gender loss some tenths). Detaching the age in the spread's loss makes sigma describe the error
without pulling the age estimate towards the easy faces.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from trainer.report import JsonValue
from vigil.models.attributes import (
    AGE_RANGE_Z,
    MAX_AGE_YEARS,
    AttributeHead,
    FaceAttributes,
    predict_attributes,
)
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

BATCH_SIZE = 64
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-3
SMOOTH_L1_BETA_YEARS = 2.0
CALIBRATION_FRACTION = 0.1
MIN_CALIBRATION_FACES = 10
"""Below twice this many training faces, the spread is left uncalibrated (scale 1)."""
MIN_SPREAD_SCALE, MAX_SPREAD_SCALE = 0.25, 4.0
AGE_LOSS_SCALE = 10.0
"""Years per unit of loss (see the module docstring)."""
AGE_BANDS = ((0, 15), (16, 69), (70, MAX_AGE_YEARS))
"""Children, adults and the old are reported apart: a child's gender is far harder to tell from a face."""
NOMINAL_RANGE_COVERAGE = round(math.erf(AGE_RANGE_Z / math.sqrt(2)), 2)
"""The share of true ages the age range is calibrated to hold (0.80, a Gaussian's ±AGE_RANGE_Z)."""


@dataclass(frozen=True)
class AttributeTrainingConfig:
    """How to train (defaults: the shipped head's settings).

    Attributes:
        epochs: Passes over the training faces.
        seed: Seeds initialisation, dropout and batch order.
        hidden: Width of the head's hidden layers.
        dropout: Dropout after each hidden layer.
    """

    epochs: int = 60
    seed: int = 0
    hidden: int = 256
    dropout: float = 0.2


@dataclass(frozen=True)
class TrainedAttributes:
    """A trained head and how training went.

    Attributes:
        head: The head, in evaluation mode.
        epoch_losses: Mean training loss of each epoch.
        seconds: Training wall time.
        calibration_faces: Training faces kept aside to calibrate the age range (not trained on).
        spread_scale: The factor the predicted spread was scaled by.
    """

    head: AttributeHead
    epoch_losses: list[float]
    seconds: float
    calibration_faces: int
    spread_scale: float


@dataclass(frozen=True)
class AgeBandFigures:
    """Figures on the held-out faces of one age band.

    Attributes:
        ages: The band, e.g. ``"0-15"``.
        faces: Held-out faces in it.
        gender_accuracy: Share of them whose gender is right.
        age_mae_years: Their mean absolute age error.
    """

    ages: str
    faces: int
    gender_accuracy: float
    age_mae_years: float

    def to_dict(self) -> dict[str, JsonValue]:
        return {
            "ages": self.ages,
            "faces": self.faces,
            "gender_accuracy": round(self.gender_accuracy, 4),
            "age_mae_years": round(self.age_mae_years, 3),
        }


@dataclass(frozen=True)
class AttributeEvaluation:
    """Figures on held-out faces, with the baselines that need no face at all.

    Attributes:
        faces: Held-out faces.
        age_mae_years: Mean absolute age error.
        gender_accuracy: Share of faces whose gender is right.
        age_range_coverage: Share of true ages inside the predicted range (nominally 80 %).
        mean_age_mae_years: MAE of always answering the training set's mean age.
        majority_gender_accuracy: Accuracy of always answering the training set's majority gender.
        by_age: The figures per age band (``AGE_BANDS``) present among the faces.
    """

    faces: int
    age_mae_years: float
    gender_accuracy: float
    age_range_coverage: float
    mean_age_mae_years: float
    majority_gender_accuracy: float
    by_age: tuple[AgeBandFigures, ...] = ()

    def to_dict(self) -> dict[str, JsonValue]:
        """The report's form: :meth:`metrics` and the figures per age band."""
        return {**self.metrics(), "by_age": [band.to_dict() for band in self.by_age]}

    def metrics(self) -> dict[str, float | int]:
        """The overall figures, as an artifact's metrics."""
        return {
            "faces": self.faces,
            "age_mae_years": round(self.age_mae_years, 3),
            "gender_accuracy": round(self.gender_accuracy, 4),
            "age_range_coverage": round(self.age_range_coverage, 4),
            "mean_age_mae_years": round(self.mean_age_mae_years, 3),
            "majority_gender_accuracy": round(self.majority_gender_accuracy, 4),
        }


def train_attribute_head(
    embeddings: Embeddings,
    ages: npt.NDArray[np.float32],
    female: npt.NDArray[np.bool_],
    config: AttributeTrainingConfig,
) -> TrainedAttributes:
    """Train a head on ``(N, D)`` backbone embeddings and their ``(N,)`` ages (years) and genders.

    Raises:
        ValueError: The arrays disagree in length, or there are fewer than 2 faces.
    """
    check_labels(len(embeddings), ages, female)
    started = time.monotonic()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    inputs = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    age_targets = torch.from_numpy(ages.astype(np.float32))
    female_targets = torch.from_numpy(female.astype(np.float32))
    calibration, fit = calibration_split(len(inputs), generator)
    calibration_count = len(calibration)
    head = AttributeHead(inputs.shape[1], config.hidden, config.dropout)
    head.standardise_with(inputs[fit])
    epoch_losses = _fit(head, inputs[fit], age_targets[fit], female_targets[fit], config.epochs, generator)
    head.eval()
    if calibration_count:
        _calibrate_spread(head, inputs[calibration], age_targets[calibration])
    seconds = time.monotonic() - started
    logger.info(
        "trained the attribute head in %.1f s: loss %.4f -> %.4f, spread scale %.2f on %d faces kept aside",
        seconds,
        epoch_losses[0],
        epoch_losses[-1],
        float(head.spread_scale),
        calibration_count,
    )
    return TrainedAttributes(head, epoch_losses, seconds, calibration_count, float(head.spread_scale))


def check_labels(faces: int, ages: npt.NDArray[np.float32], female: npt.NDArray[np.bool_]) -> None:
    """Refuse training inputs whose lengths disagree, or fewer than 2 faces.

    Raises:
        ValueError: Saying which lengths.
    """
    if not faces == len(ages) == len(female) or faces < 2:
        raise ValueError(
            f"need 2+ faces with one age and gender each, got {faces} faces, "
            f"{len(ages)} ages, {len(female)} genders"
        )


def calibration_split(faces: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(calibration, fit)`` indices: ``CALIBRATION_FRACTION`` of the training faces kept aside
    to calibrate the age range (none below ``2 · MIN_CALIBRATION_FACES`` faces), the rest to train on."""
    order = torch.randperm(faces, generator=generator)
    count = round(faces * CALIBRATION_FRACTION) if faces >= MIN_CALIBRATION_FACES * 2 else 0
    return order[:count], order[count:]


def _fit(
    head: AttributeHead,
    inputs: torch.Tensor,
    ages: torch.Tensor,
    female: torch.Tensor,
    epochs: int,
    generator: torch.Generator,
) -> list[float]:
    """Train ``head`` in place; returns each epoch's mean loss."""
    optimiser = torch.optim.AdamW(head.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    batches = math.ceil(len(inputs) / BATCH_SIZE)
    # One-cycle: a warm-up then a long decay, stable across dataset sizes without tuning.
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=LEARNING_RATE, total_steps=epochs * batches
    )
    loss_fn = AttributeLoss()
    epoch_losses: list[float] = []
    head.train()
    for epoch in tqdm(range(epochs), desc="training attribute head", unit="epoch"):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            loss = loss_fn(head(inputs[batch]), ages[batch], female[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        epoch_losses.append(total / len(inputs))
        logger.debug("epoch %d: loss %.4f", epoch, epoch_losses[-1])
    return epoch_losses


def _calibrate_spread(head: AttributeHead, inputs: torch.Tensor, ages: torch.Tensor) -> None:
    """Scale the spread so the age range holds ``NOMINAL_RANGE_COVERAGE`` of these (unseen) faces' ages."""
    with torch.no_grad():
        head.spread_scale.fill_(1.0)
        head.spread_scale.fill_(spread_scale_for(head(inputs), ages))


def spread_scale_for(outputs: torch.Tensor, ages: torch.Tensor) -> float:
    """The factor on sigma that makes ``age ± AGE_RANGE_Z · sigma`` hold the nominal share of ``ages``.

    Args:
        outputs: ``(N, 3)`` outputs of a model with spread scale 1, on faces it did not train on.
        ages: ``(N,)`` their true ages.
    """
    ratios = (ages - outputs[:, 0]).abs() / torch.exp(outputs[:, 1])
    scale = float(torch.quantile(ratios, NOMINAL_RANGE_COVERAGE)) / AGE_RANGE_Z
    return min(max(scale, MIN_SPREAD_SCALE), MAX_SPREAD_SCALE)


class AttributeLoss(nn.Module):
    """The training loss (module docstring) of ``(B, 3)`` head outputs against ``(B,)`` targets."""

    def forward(self, outputs: torch.Tensor, ages: torch.Tensor, female: torch.Tensor) -> torch.Tensor:
        age, log_spread, female_logit = outputs[:, 0], outputs[:, 1], outputs[:, 2]
        age_loss = nn.functional.smooth_l1_loss(age, ages, beta=SMOOTH_L1_BETA_YEARS)
        residual = ages - age.detach()
        spread_loss = nn.functional.gaussian_nll_loss(
            torch.zeros_like(residual), residual, torch.exp(2 * log_spread)
        )
        gender_loss = nn.functional.binary_cross_entropy_with_logits(female_logit, female)
        total: torch.Tensor = (age_loss + spread_loss) / AGE_LOSS_SCALE + gender_loss
        return total


def evaluate_attributes(
    head: AttributeHead,
    embeddings: Embeddings,
    ages: npt.NDArray[np.float32],
    female: npt.NDArray[np.bool_],
    *,
    train_ages: npt.NDArray[np.float32],
    train_female: npt.NDArray[np.bool_],
) -> AttributeEvaluation:
    """The head's figures on held-out faces, and the baselines fitted on the training labels.

    Args:
        head: The trained head.
        embeddings: ``(N, D)`` held-out backbone embeddings.
        ages: ``(N,)`` their true ages (years).
        female: ``(N,)`` their true genders.
        train_ages: The training faces' ages (for the mean-age baseline).
        train_female: The training faces' genders (for the majority baseline).
    """
    return evaluate_predictions(
        predict_attributes(head, embeddings), ages, female, train_ages=train_ages, train_female=train_female
    )


def evaluate_predictions(
    predicted: Sequence[FaceAttributes],
    ages: npt.NDArray[np.float32],
    female: npt.NDArray[np.bool_],
    *,
    train_ages: npt.NDArray[np.float32],
    train_female: npt.NDArray[np.bool_],
) -> AttributeEvaluation:
    """:func:`evaluate_attributes` of any model's answers for the held-out faces, in their order."""
    estimates = np.array([face.age for face in predicted])
    said_female = np.array([face.gender == "female" for face in predicted])
    inside = np.array(
        [
            low <= age <= high
            for face, age in zip(predicted, ages, strict=True)
            for low, high in [face.age_range]
        ]
    )
    majority_female = bool(train_female.mean() >= 0.5)
    right = said_female == female
    errors = np.abs(estimates - ages)
    bands = []
    for low, high in AGE_BANDS:
        members = (ages >= low) & (ages <= high)
        if members.any():
            bands.append(
                AgeBandFigures(
                    f"{low}-{high}" if high < MAX_AGE_YEARS else f"{low}+",
                    int(members.sum()),
                    float(right[members].mean()),
                    float(errors[members].mean()),
                )
            )
    return AttributeEvaluation(
        faces=len(ages),
        age_mae_years=float(errors.mean()),
        gender_accuracy=float(right.mean()),
        age_range_coverage=float(inside.mean()),
        mean_age_mae_years=float(np.abs(ages - train_ages.mean()).mean()),
        majority_gender_accuracy=float((female == majority_female).mean()),
        by_age=tuple(bands),
    )
