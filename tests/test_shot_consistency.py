"""The pose pack's identity check across shots, on the real embedded encoder (YuNet + SFace)
and the shipped portraits (tests/data/faces: Ardern, Macron, Obama; scikit-image's
astronaut, Eileen Collins): a pack is several shots of one person made different (mirrored,
smaller, reframed, darker, turned, far away on a backdrop), with another person's photo
slipped in as the impostor."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.generation import consistency
from photogen_pipelines.generation.consistency import check_pack, pack_consistency


def _shots_of(image: np.ndarray) -> list[np.ndarray]:
    """Seven shots of one sitting, as different as a pose pack's."""
    picture = Image.fromarray(image)
    width, height = picture.size
    far = Image.new("RGB", (width, height), (200, 196, 190))
    far.paste(picture.resize((width * 3 // 5, height * 3 // 5), Image.LANCZOS), (width // 5, height // 3))
    return [
        image,
        np.ascontiguousarray(image[:, ::-1]),
        np.asarray(picture.resize((width // 2, height // 2), Image.LANCZOS)),
        np.asarray(picture.crop((width // 8, 0, width * 7 // 8, height * 3 // 4))),
        np.clip(image.astype(np.float32) * 0.75, 0, 255).astype(np.uint8),
        np.asarray(picture.rotate(8, Image.BICUBIC, fillcolor=(128, 128, 128))),
        np.asarray(far),
    ]


def test_a_pack_of_one_person_passes(analyzer, face_images):
    shots = _shots_of(face_images["obama"])
    result = check_pack(shots, analyzer)
    assert (result.passed, result.reason, result.impostors) == (True, consistency.PASSED, ())
    assert result.threshold == analyzer.default_threshold
    matrix = np.array(result.matrix, dtype=float)
    assert matrix.shape == (7, 7) and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    assert result.lowest.similarity >= result.threshold and result.failing_pairs == ()


@pytest.mark.parametrize("person, impostor", [("obama", "macron"), ("ardern", "astronaut"), ("astronaut", "obama")])
def test_the_one_impostor_shot_of_a_pack_is_named(analyzer, face_images, person, impostor):
    shots = _shots_of(face_images[person])
    shots.insert(3, face_images[impostor])
    result = check_pack(shots, analyzer)
    assert (result.passed, result.reason, result.impostors) == (False, consistency.IMPOSTORS, (3,))
    # every failing pair is the impostor's; the rest of the pack stands
    assert all(3 in (pair.first, pair.second) for pair in result.failing_pairs)
    assert len(result.failing_pairs) == len(shots) - 1


def test_a_shot_without_a_face_is_left_out_not_called_an_impostor(analyzer, face_images):
    shots = _shots_of(face_images["macron"])[:3] + [data.coffee()]
    result = check_pack(shots, analyzer)
    assert (result.passed, result.impostors, result.without_face) == (True, (), (3,))
    assert result.matrix[3] == (None, None, None, None)


def test_scattered_failures_name_no_impostor_and_fail_the_pack():
    # four shots where only shots 0 and 1 disagree: each fails against one of three others
    base = np.array([1.0, 0.0, 0.0])
    tilt = lambda degrees: np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees)), 0.0])  # noqa: E731
    embeddings = [tilt(-40), tilt(40), base, base + [0, 0, 0.05]]  # 0 and 1: cos 80 deg = 0.17
    result = pack_consistency(embeddings, threshold=0.363)
    assert (result.passed, result.reason, result.impostors) == (False, consistency.SCATTERED, ())
    assert [(p.first, p.second) for p in result.failing_pairs] == [(0, 1)]


def test_the_summary_is_json_with_similarities_and_no_embeddings(analyzer, face_images):
    shots = _shots_of(face_images["ardern"])[:3] + [face_images["obama"]]
    summary = check_pack(shots, analyzer).summary()
    again = json.loads(json.dumps(summary))
    assert again["impostors"] == [3] and again["shots"] == 4 and again["pairs"] == 6
    assert len(again["failing_pairs"]) == 3 and again["lowest"][2] < again["threshold"]
    assert all(len(row) == 4 for row in again["matrix"])  # similarities only: no 128-d embedding
