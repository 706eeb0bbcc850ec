"""The face stage and the identity encoder on real photographs."""

import itertools

import numpy as np
import pytest
from PIL import Image

from photogen_pipelines.engines.base import cosine

SFACE_THRESHOLD = 0.363


def test_exactly_one_face_is_found_in_each_portrait(analyzer, face_images):
    for name, image in face_images.items():
        faces = analyzer.detect(image)
        assert len(faces) == 1, name
        face = faces[0]
        assert face.score > 0.85, name
        height, width = image.shape[:2]
        assert 0 <= face.box.x and face.box.x + face.box.w <= width * 1.02, name
        assert 0.1 * width < face.box.w < 0.7 * width, name
        # landmarks: both eyes above the nose, the nose above the mouth corners
        (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = face.landmarks
        assert ry < ny < mry and ly < ny < mly, name


def test_detection_coordinates_are_in_the_original_image_when_downscaled_internally(analyzer, face_images):
    small = face_images["macron"]
    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 3, small.shape[0] * 3)))
    box_small, box_big = analyzer.detect(small)[0].box, analyzer.detect(big)[0].box
    assert box_big.x == pytest.approx(box_small.x * 3, rel=0.08)
    assert box_big.w == pytest.approx(box_small.w * 3, rel=0.08)


def test_different_people_score_below_the_sface_threshold(analyzer, face_images):
    embeddings = {name: analyzer.embed(img, analyzer.detect(img)[0]) for name, img in face_images.items()}
    for a, b in itertools.combinations(embeddings, 2):
        assert cosine(embeddings[a], embeddings[b]) < SFACE_THRESHOLD - 0.05, (a, b)


def test_same_person_in_another_framing_scores_far_above_the_threshold(analyzer, face_images):
    for name, image in face_images.items():
        reference = analyzer.embed(image, analyzer.detect(image)[0])
        mirrored = np.ascontiguousarray(image[:, ::-1])
        smaller = np.asarray(Image.fromarray(mirrored).resize((image.shape[1] // 2, image.shape[0] // 2), Image.LANCZOS))
        face = analyzer.detect(smaller)[0]
        assert cosine(reference, analyzer.embed(smaller, face)) > 0.6, name


def test_embeddings_are_unit_length(analyzer, face_images):
    image = face_images["obama"]
    assert np.linalg.norm(analyzer.embed(image, analyzer.detect(image)[0])) == pytest.approx(1.0, abs=1e-4)


def test_an_image_without_a_face_has_no_faces(analyzer):
    from skimage import data

    assert analyzer.detect(data.coffee()) == []
