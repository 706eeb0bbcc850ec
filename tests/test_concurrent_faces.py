"""One face analyzer serves every thread of a process: the API answers uploads from a thread
pool. Shared without care, OpenCV's models answered "no face" for a clear selfie, raised
assertion errors, and once crashed the API with SIGSEGV (found by the soak, benchmarks/soak.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key
from tests.servers import api_server


def _look(analyzer: OpenCvFaceAnalyzer, image: np.ndarray) -> tuple[tuple[float, ...], np.ndarray]:
    [face, *_] = analyzer.detect(image)
    box = face.box
    return tuple(round(v, 3) for v in (box.x, box.y, box.w, box.h)), analyzer.embed(image, face)


@pytest.mark.slow
def test_many_threads_at_once_see_what_one_thread_sees(face_images):
    analyzer = OpenCvFaceAnalyzer()
    images = list(face_images.values())
    expected = [_look(analyzer, image) for image in images]
    start = threading.Barrier(8)

    def look(index: int):
        start.wait() if index < 8 else None  # the first eight set off together
        return _look(analyzer, images[index % len(images)])

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(look, range(48)))
    for index, (box, feature) in enumerate(seen):
        want_box, want_feature = expected[index % len(images)]
        assert box == want_box, index
        assert float(feature @ want_feature) > 0.999, index


def test_selfies_uploaded_at_the_same_moment_are_all_accepted(tmp_path, face_images):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    selfies = [jpeg_bytes(image) for image in face_images.values()] * 3
    with api_server(make_app(settings)) as url:
        auth = new_key(settings)
        start = threading.Barrier(len(selfies))

        def upload(payload: bytes) -> int:
            start.wait()
            response = requests.post(
                f"{url}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.jpg", payload)}, timeout=120
            )
            return response.status_code

        with ThreadPoolExecutor(len(selfies)) as pool:
            codes = list(pool.map(upload, selfies))
    assert codes == [201] * len(selfies)
