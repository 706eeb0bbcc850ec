"""Content safety: the verdict on one picture, a customer's photo or a generated one.

The detector (engines/base.py `SafetyDetector`, built by factories.safety_detector) scores
how explicit a picture is; quality.yaml's `content_safe` says where the line is, one for
uploads and one for outputs. A refused upload is a BadInput with the stable code
`unsafe_content`; a refused output fails its attempt at the proof gate
(stages.score_candidate), so it is regenerated and, if every round is refused, the order
is rejected with that reason and refunded like any rejection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from photogen_pipelines.catalog import QualityGates
from photogen_pipelines.engines.base import SafetyDetector, SafetyScore
from photogen_pipelines.errors import BadInput
from photogen_pipelines.storage.artifacts import Validation

UNSAFE_CONTENT = "unsafe_content"


@dataclass(frozen=True)
class SafetyVerdict:
    score: SafetyScore
    reason: str | None  # None: the picture may be used

    @property
    def passed(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class SafetyGate:
    """A detector and the highest explicit score it lets through (exclusive)."""

    detector: SafetyDetector
    max_explicit: float

    def verdict(self, rgb: np.ndarray, what: str) -> SafetyVerdict:
        """The detector's score of `rgb` and why `what` (the photo, the proof) is refused, if it is."""
        score = self.detector.score(rgb)
        if score.refused:
            return SafetyVerdict(score, f"{what} was refused by the content-safety check ({score.refused})")
        if score.explicit >= self.max_explicit:
            return SafetyVerdict(
                score, f"{what} was flagged as explicit content ({score.explicit:.2f} ≥ {self.max_explicit:.2f})"
            )
        return SafetyVerdict(score, None)


def safety_gate(detector: SafetyDetector, quality: QualityGates, applies_to: Literal["upload", "output"]) -> SafetyGate:
    """The gate for customers' photos (`upload`) or generated pictures (`output`)."""
    return SafetyGate(detector, getattr(quality.content_safe.max_explicit_score, applies_to))


def check_photo(image: np.ndarray, gate: SafetyGate) -> None:
    """A customer's photo, before anything of it is stored: BadInput `unsafe_content`."""
    verdict = gate.verdict(image, "the photo")
    if not verdict.passed:
        raise BadInput(verdict.reason, code=UNSAFE_CONTENT)


@dataclass(frozen=True)
class StoredProofsSafety:
    """The stored proofs' explicit scores, as the proof gate recorded them (`Validation`):
    what the `proofs_are_safe` asset check reports."""

    scores: dict[int, float | None]  # variant -> the explicit score of its stored proof (None: not scored)
    max_explicit: float
    flagged_attempts: int  # attempts of any round the check failed (each was regenerated)

    @property
    def highest(self) -> float | None:
        known = [score for score in self.scores.values() if score is not None]
        return max(known, default=None)

    def problems(self) -> list[str]:
        """Why a stored proof may not be shown: over the threshold, or never scored."""
        found = []
        for variant, score in sorted(self.scores.items()):
            if score is None:
                found.append(f"proof {variant} was not checked for explicit content")
            elif score >= self.max_explicit:
                found.append(f"proof {variant} is flagged as explicit content ({score:.2f} ≥ {self.max_explicit:.2f})")
        return found


def stored_proofs_safety(validation: Validation, max_explicit: float) -> StoredProofsSafety:
    scores = {variant: validation.approved_score(variant).explicit for variant in validation.proofs}
    flagged = sum(1 for s in validation.scores if s.explicit is not None and s.explicit >= max_explicit)
    return StoredProofsSafety(scores, max_explicit, flagged)
