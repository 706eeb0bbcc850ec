"""The small interfaces every engine implements, so resources can swap backends."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from photogen_pipelines.errors import ModelError
from photogen_pipelines.imaging.images import Box
from photogen_pipelines.storage.artifacts import Usage  # what a metered engine reports, stored as is


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    landmarks: tuple[tuple[float, float], ...]  # eyes, nose tip, mouth corners
    detector_row: np.ndarray = field(repr=False, compare=False)  # the detector's raw output, for alignment

    def to_json(self) -> dict:
        return {
            "box": [round(v, 1) for v in (self.box.x, self.box.y, self.box.w, self.box.h)],
            "score": round(self.score, 4),
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
        }


class FaceAnalyzer(Protocol):
    name: str
    version: str
    default_threshold: float

    def detect(self, rgb: np.ndarray, min_score: float = ...) -> list[Face]: ...
    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray: ...


class Stylizer(Protocol):
    name: str
    version: str
    params_section: str  # the style catalog's section this engine reads: embedded | diffusion

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray: ...


@runtime_checkable
class SeededStylizer(Stylizer, Protocol):
    """A stylizer whose variants differ by their random seed (diffusion): the variants of
    one round are rendered from the same picture in one batch, one seed each."""

    def stylize_variants(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int]) -> list[np.ndarray]: ...


@runtime_checkable
class ResidentStyles(Protocol):
    """A stylizer that can keep a style's own weights loaded between orders (a LoRA, a
    style vector): the warm engine service loads the styles a replica serves and unloads
    the least recently used (engine_service/)."""

    def load_style(self, params: dict) -> None: ...
    def unload_style(self, params: dict) -> None: ...


@runtime_checkable
class MeteredStylizer(Protocol):
    """A stylizer that knows what its calls cost (the serverless backends): the assets take
    the usage after each round, so a local engine is metered by the asset's own clock.
    `Usage` is the documents' own model (storage/artifacts.py, a floor below the engines),
    so what an engine reports is what the stages store."""

    def take_usage(self) -> Usage:
        """What was used since the last take; resets it."""
        ...


@runtime_checkable
class ReferenceStylizer(Protocol):
    """A stylizer that paints from reference photos (FLUX.2 klein, Qwen-Image-Edit, their
    hosted endpoints): every photo of the customer goes in (the primary first, at most
    `max_references`), each seed gives one picture, generated at `size` (width, height:
    the product's aspect) rather than cropped afterwards. `strength` is the identity
    gate's knob, as for every stylizer: its retry lowers it, and the engine says how it
    keeps more of the photos at a lower one."""

    max_references: int

    def paint_from_references(
        self, references: list[np.ndarray], params: dict, strength: float, seeds: list[int], size: tuple[int, int]
    ) -> list[np.ndarray]: ...


class Upscaler(Protocol):
    name: str
    version: str
    scales: tuple[int, ...]

    def upscale(self, rgb: np.ndarray, scale: int) -> np.ndarray: ...


def check_upscale_input(image: np.ndarray, scale: int, scales: tuple[int, ...], model: str) -> None:
    """What every Upscaler accepts: HxWx3 uint8 RGB and one of its model's scales."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"upscale needs a uint8 numpy array, got {got}")
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"upscale needs an HxWx3 RGB image, got shape {image.shape}")
    if scale not in scales:
        raise ValueError(f"{model} supports scales {scales}, not {scale}")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def package_dir(package: str, *parts: str) -> Path:
    """The folder of an installed package's data, found without importing its code."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the model package {package!r} is not installed (pip install photogen installs it)")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    return path


def package_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "local"


@dataclass(frozen=True)
class SafetyScore:
    """What a safety detector says of one picture: how explicit it is, 0 (safe) to 1, the
    backend's own labels with their scores where it has any, and `refused`: a reason the
    backend gives to refuse the picture whatever the threshold (a hosted moderation's
    sexual/minors category), None when it gives none."""

    explicit: float
    labels: dict[str, float] = field(default_factory=dict)
    refused: str | None = None


class SafetyDetector(Protocol):
    """Scores a picture for explicit content: every upload and every generated picture
    goes through one (generation/safety.py holds the thresholds' verdict)."""

    name: str
    version: str

    def score(self, rgb: np.ndarray) -> SafetyScore:
        """The score of one HxWx3 uint8 RGB picture."""
        ...


def check_safety_input(image: np.ndarray) -> None:
    """What every SafetyDetector accepts: an HxWx3 uint8 RGB picture."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"a safety score needs an HxWx3 uint8 RGB numpy array, got {got}")


class Animator(Protocol):
    """Makes a few seconds of video from one approved portrait (image-to-video: the
    `living_portrait` job, engines/video_wan.py): round(seconds x fps) HxWx3 uint8 RGB
    frames at `size` (width, height), starting from the portrait; the same seed gives the
    same frames. The identity gate checks sampled frames (generation/video_gate.py)."""

    name: str
    version: str
    native_fps: int  # the frame rate the model moves naturally at

    def animate(
        self, portrait: np.ndarray, prompt: str, seconds: float, fps: int, seed: int, size: tuple[int, int]
    ) -> list[np.ndarray]: ...
