"""The identity check across the shots of a pose pack: every pair of shots is one person.

Each shot is also gated on its own against the identity (the proofs' gate); this check is
the pack's: a shot can pass its own gate near the threshold on one side while another
passes on the other, and side by side they read as two people. Every pair of shots' face
embeddings must score at least the threshold (cosine, `engines.base.cosine`), by default
the validator encoder's own verification threshold (`FaceAnalyzer.default_threshold`:
SFace 0.363), the yardstick generation/references.py holds a customer's photos to.

A shot that fails against most of the others (more than half) is an impostor: the pack
names it, and the rest of the pack stands without it. A pack whose failures are scattered
names no impostor and fails whole. A shot with no face (a back view) is left out of the
pairs and listed: whether a pose must show a face is the job kind's call, not this one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from photogen_pipelines.engines.base import FaceAnalyzer, cosine
from photogen_pipelines.generation.stages import PROOF_MIN_FACE_SCORE, detect_faces

PASSED = "every pair of shots shows the same person"
IMPOSTORS = "some shots show another person"
SCATTERED = "some pairs of shots do not show the same person"
TOO_FEW = "fewer than two shots show a face: nothing to compare"  # passes: each shot's own gate holds


def shot_embedding(image: np.ndarray, faces: FaceAnalyzer) -> np.ndarray | None:
    """The identity of a shot's most confident face; None when it shows none."""
    found = detect_faces(image, faces, PROOF_MIN_FACE_SCORE)
    if not found:
        return None
    face = max(found, key=lambda f: f.score)
    return faces.embed(image, face)


@dataclass(frozen=True)
class PairScore:
    first: int  # the shots' positions in the pack
    second: int
    similarity: float

    def to_json(self) -> list:
        return [self.first, self.second, self.similarity]


@dataclass(frozen=True)
class PackConsistency:
    threshold: float
    passed: bool
    reason: str  # PASSED, IMPOSTORS, SCATTERED or TOO_FEW: stable wording
    impostors: tuple[int, ...]  # the shots that fail against most others
    without_face: tuple[int, ...]  # left out of the pairs
    matrix: tuple[tuple[float | None, ...], ...]  # similarity of shots i and j (None: a shot without a face)
    lowest: PairScore | None  # the least alike pair
    failing_pairs: tuple[PairScore, ...]

    def summary(self) -> dict:
        """What the ledger and the job's metadata keep: the verdict and the matrix's shape,
        not the embeddings (a face's embedding is personal data; its similarities are not)."""
        off_diagonal = [
            self.matrix[i][j]
            for i in range(len(self.matrix))
            for j in range(i + 1, len(self.matrix))
            if self.matrix[i][j] is not None
        ]
        return {
            "passed": self.passed,
            "reason": self.reason,
            "threshold": self.threshold,
            "shots": len(self.matrix),
            "impostors": list(self.impostors),
            "without_face": list(self.without_face),
            "pairs": len(off_diagonal),
            "failing_pairs": [p.to_json() for p in self.failing_pairs],
            "lowest": None if self.lowest is None else self.lowest.to_json(),
            "median": None if not off_diagonal else round(float(np.median(off_diagonal)), 4),
            "matrix": [list(row) for row in self.matrix],
        }


def pack_consistency(embeddings: Sequence[np.ndarray | None], threshold: float) -> PackConsistency:
    """Every pair of shots' embeddings against `threshold`; the impostors named."""
    count = len(embeddings)
    faced = [i for i, e in enumerate(embeddings) if e is not None]
    without_face = tuple(i for i in range(count) if embeddings[i] is None)
    matrix: list[list[float | None]] = [[None] * count for _ in range(count)]
    for i in faced:
        matrix[i][i] = 1.0
    pairs = []
    for i, j in combinations(faced, 2):
        similarity = round(cosine(embeddings[i], embeddings[j]), 4)
        matrix[i][j] = matrix[j][i] = similarity
        pairs.append(PairScore(i, j, similarity))
    failing = tuple(p for p in pairs if p.similarity < threshold)
    lowest = min(pairs, key=lambda p: p.similarity, default=None)

    def fails_against_most(shot: int) -> bool:
        others = len(faced) - 1
        failures = sum(shot in (p.first, p.second) for p in failing)
        return failures * 2 > others

    impostors = tuple(i for i in faced if fails_against_most(i))
    if len(faced) < 2:
        reason = TOO_FEW
    elif not failing:
        reason = PASSED
    elif impostors:
        reason = IMPOSTORS
    else:
        reason = SCATTERED
    frozen = tuple(tuple(row) for row in matrix)
    return PackConsistency(threshold, reason in (PASSED, TOO_FEW), reason, impostors, without_face, frozen, lowest, failing)


def check_pack(shots: Sequence[np.ndarray], faces: FaceAnalyzer, threshold: float | None = None) -> PackConsistency:
    """The pack's shots (RGB pictures) embedded with `faces`, then checked; the threshold
    is the encoder's own unless given."""
    embeddings = [shot_embedding(shot, faces) for shot in shots]
    return pack_consistency(embeddings, faces.default_threshold if threshold is None else threshold)
