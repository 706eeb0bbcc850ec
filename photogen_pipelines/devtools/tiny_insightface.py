"""Tiny random-weight stand-ins for an insightface model pack, built with `onnx.helper`.

FOR TESTS AND `photogen dev make-tiny-models` ONLY, NEVER FOR CUSTOMERS: the "faces"
these models find are the reddest (and the bluest) patches of a picture and the
"identity" is a random projection of a few average colours. What they do prove is the production code path:
insightface's own model router, SCRFD decoding (anchors, strides, NMS, its static-shape
sessions), 5-point alignment and ArcFace preprocessing all run on them unchanged, on
the CPU, in milliseconds, with nothing downloaded (docs/architecture.md §3: GPU code is tested on
CPU with tiny random-weight models, the same loader, only smaller).

insightface decides what a file is from its shapes (`model_zoo.ModelRouter`):
- at least 5 outputs -> SCRFD detector; 9 outputs = 3 strides (8, 16, 32) x
  (score, box, keypoints), 2 anchors per cell, each output a 2-D (anchors, k) tensor;
- one square 112x112 input (and not 192/96/128 with two inputs) -> ArcFace recognizer.

The detector (`det_tiny.onnx`, ~5 KB) finds at most one face per stride, on the cell
where a colour feature peaks (ArgMax -> OneHot: ties go to the first cell, so the
result is deterministic), scoring sigmoid(gain * feature + bias) there and ~0 elsewhere:
- stride 32, the large face: the cell with the most red (so nearly every photo has
  one, scoring 0.99 for white or red, 0.73 for mid grey, 0.05 for black, which is no
  face), 96 to 288 px wide at 640 px depending on its green: size and score are
  independent, so "largest first" is not "best first";
- stride 16, a small face: the bluest cell (blue minus the mean of red and green; 0.998
  for pure blue, ~0.5 for sky, 0.12 for grey), 32 px wide: under a fifth of the large
  face's area, so `stages.count_people` takes it for a poster, not a second person;
- stride 8 never fires.
The five keypoints sit where ArcFace's alignment template puts them inside the box
(eyes above the nose above the mouth corners), box and keypoints centred on the cell.

The recognizer (`rec_tiny.onnx`, ~15 KB): the 112x112 aligned crop averaged to 4x4
cells per colour, centred, multiplied by a fixed-seed random 48x64 matrix and repeated
8 times with fixed random signs: 512 numbers that change with the pixels, identical
for identical crops. insightface's ArcFace wrapper normalises its input with mean and
std 127.5 because no node among the first eight is named Sub*/Mul* (its MXNet test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DETECTOR_FILE = "det_tiny.onnx"
RECOGNIZER_FILE = "rec_tiny.onnx"
NOTICE_FILE = "README.txt"
OPSET = 13
IR_VERSION = 8  # onnxruntime releases of the last years all read it
STRIDES = (8, 16, 32)
ANCHORS = 2
OFF = -30.0  # the logit of anchors that never fire
PEAK_MARGIN = 40.0  # how much lower every cell but a level's peak scores (logit)


@dataclass(frozen=True)
class Level:
    """One firing stride: its face sits on the cell where `feature` (weights on the
    cell's mean R, G, B, each normalised to [-1, 1]) is largest, scores
    sigmoid(gain * feature + bias) and is 2 * (size_base + size_gain . RGB) strides wide."""

    feature: tuple[float, float, float]
    gain: float
    bias: float
    size_gain: tuple[float, float, float]
    size_base: float


LEVELS = {
    # the large face: the reddest cell; 3 +- 1.5 strides by green: 96 .. 288 px at 640 px
    32: Level(feature=(1.0, 0.0, 0.0), gain=4.0, bias=1.0, size_gain=(0.0, 1.5, 0.0), size_base=3.0),
    # the small face, 32 px at 640: the bluest cell
    16: Level(feature=(-0.5, -0.5, 1.0), gain=4.0, bias=-2.0, size_gain=(0.0, 0.0, 0.0), size_base=1.0),
}
EMBEDDING_SIZE = 512
EMBEDDING_CELLS = 4  # 112 / 28
PROJECTION_SIZE = 64
SEED = 20240611
# ArcFace's 112x112 alignment template (insightface.utils.face_align.arcface_dst).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
NOTICE = """\
Tiny random-weight ONNX models in the layout of an insightface model pack, written by
photogen_pipelines.devtools.tiny_insightface for tests and `photogen dev make-tiny-models`.
They are NOT face models: they find the reddest and the bluest patch of a picture and
embed a few average colours. Never use them for customers' orders.
"""


def _model(nodes, inputs, outputs, initializers, name: str, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="photogen-tiny-insightface", doc_string=doc
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"photogen": "tiny random-weight test model; not for customers"})
    onnx.checker.check_model(model)
    return model


def _const(name: str, value, dtype=np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def tiny_detector() -> onnx.ModelProto:
    """An SCRFD-shaped detector: input 1x3xHxW (H, W multiples of 32), 9 outputs."""
    keypoints = (ARCFACE_TEMPLATE - 56.0) / 56.0  # in half-box units around the box centre
    initializers = [
        # SCRFD measures from the cell's top-left corner; +-0.5 stride centres the box on the cell
        _const("w_box", np.ones((4 * ANCHORS, 1, 1, 1))),
        _const("b_box", np.tile([-0.5, -0.5, 0.5, 0.5], ANCHORS)),
        _const("w_kps", np.tile(keypoints.reshape(-1), ANCHORS).reshape(10 * ANCHORS, 1, 1, 1)),
        _const("b_kps", np.full(10 * ANCHORS, 0.5)),
        _const("onehot_values", [0.0, 1.0]),
        _const("shape_score", [-1, 1], np.int64),
        _const("shape_bbox", [-1, 4], np.int64),
        _const("shape_kps", [-1, 10], np.int64),
    ]
    nodes = []

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))

    outputs = {"score": [], "bbox": [], "kps": []}  # insightface reads them in this order
    for s in STRIDES:
        level = LEVELS.get(s)
        if level is None:  # never fires: zero evidence, a very negative bias
            feature, score_w, score_b, size_w, size_b = (0, 0, 0), [[0, 0], [0, 0]], [OFF, OFF], (0, 0, 0), 1.0
        else:
            feature, size_w, size_b = level.feature, level.size_gain, level.size_base
            # anchor 0: gain * feature + bias at the peak cell, PEAK_MARGIN lower elsewhere; anchor 1: off
            score_w, score_b = [[PEAK_MARGIN, level.gain], [0, 0]], [level.bias - PEAK_MARGIN, OFF]
        initializers += [
            _const(f"w_feature{s}", np.reshape(feature, (1, 3, 1, 1))),
            _const(f"w_score{s}", np.reshape(score_w, (ANCHORS, 2, 1, 1))),
            _const(f"b_score{s}", score_b),
            _const(f"w_size{s}", np.reshape(size_w, (1, 3, 1, 1))),
            _const(f"b_size{s}", [size_b]),
        ]
        node("AveragePool", ["input.1"], f"pool{s}", kernel_shape=[s, s], strides=[s, s])  # (1, 3, h, w)
        node("Conv", [f"pool{s}", f"w_feature{s}"], f"feature{s}")  # (1, 1, h, w)
        # a one-hot mask of the first cell with the largest feature: one face per level
        node("Flatten", [f"feature{s}"], f"flat{s}", axis=1)
        node("ArgMax", [f"flat{s}"], f"peak{s}", axis=1, keepdims=1)
        node("Size", [f"flat{s}"], f"cells{s}")
        node("OneHot", [f"peak{s}", f"cells{s}", "onehot_values"], f"onehot{s}", axis=-1)
        node("Shape", [f"feature{s}"], f"feature_shape{s}")
        node("Reshape", [f"onehot{s}", f"feature_shape{s}"], f"mask{s}")
        node("Concat", [f"mask{s}", f"feature{s}"], f"evidence{s}", axis=1)
        node("Conv", [f"evidence{s}", f"w_score{s}", f"b_score{s}"], f"logit{s}")  # (1, anchors, h, w)
        node("Sigmoid", [f"logit{s}"], f"prob{s}")
        node("Conv", [f"pool{s}", f"w_size{s}", f"b_size{s}"], f"size{s}")  # half-size, in strides
        node("Conv", [f"size{s}", "w_box", "b_box"], f"dist{s}")  # (1, anchors*4, h, w)
        node("Conv", [f"size{s}", "w_kps", "b_kps"], f"kpsmap{s}")  # (1, anchors*10, h, w)
        # (1, anchors*k, h, w) -> (h*w*anchors, k): cell-major with the anchors of a cell
        # adjacent, which is how SCRFD lays out its anchor centres.
        for kind, source, width in (("score", f"prob{s}", 1), ("bbox", f"dist{s}", 4), ("kps", f"kpsmap{s}", 10)):
            out = f"{kind}_{s}"
            node("Transpose", [source], f"{out}_nhwc", perm=[0, 2, 3, 1])
            node("Reshape", [f"{out}_nhwc", f"shape_{kind}"], out)
            outputs[kind].append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [f"anchors{s}", width]))
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])]
    graph_outputs = [value for kind in outputs.values() for value in kind]
    return _model(
        nodes, inputs, graph_outputs, initializers, "tiny_scrfd", "SCRFD-shaped tiny detector for tests; not a face model"
    )


def tiny_recognizer() -> onnx.ModelProto:
    """An ArcFace-shaped recognizer: input Nx3x112x112, output Nx512."""
    rng = np.random.default_rng(SEED)
    features = 3 * EMBEDDING_CELLS * EMBEDDING_CELLS
    cell = 112 // EMBEDDING_CELLS
    initializers = [
        _const("projection", rng.standard_normal((features, PROJECTION_SIZE)) / np.sqrt(features)),
        _const("repeats", [1, EMBEDDING_SIZE // PROJECTION_SIZE], np.int64),
        _const("signs", rng.choice([-1.0, 1.0], size=EMBEDDING_SIZE)),
    ]
    nodes = [
        helper.make_node(
            "AveragePool", ["input.1"], ["cells"], name="rec_cells", kernel_shape=[cell, cell], strides=[cell, cell]
        ),
        helper.make_node("Flatten", ["cells"], ["flat"], name="rec_flat", axis=1),
        helper.make_node("ReduceMean", ["flat"], ["flat_mean"], name="rec_mean", axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "flat_mean"], ["centred"], name="rec_centre"),
        helper.make_node("MatMul", ["centred", "projection"], ["projected"], name="rec_project"),
        helper.make_node("Tile", ["projected", "repeats"], ["tiled"], name="rec_tile"),
        helper.make_node("Mul", ["tiled", "signs"], ["embedding"], name="rec_signs"),
    ]
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch", 3, 112, 112])]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_SIZE])]
    return _model(
        nodes, inputs, outputs, initializers, "tiny_arcface", "ArcFace-shaped tiny recognizer for tests; not a face model"
    )


def write_tiny_insightface_pack(directory: str | Path, *, detector: bool = True, recognizer: bool = True) -> Path:
    """Write the tiny pack (`det_tiny.onnx`, `rec_tiny.onnx`, a README) into `directory`.

    For tests and `photogen dev make-tiny-models` only, never for customers. The bytes
    are the same on every call (fixed seed), so the analyzer's version is stable.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    if detector:
        onnx.save_model(tiny_detector(), str(target / DETECTOR_FILE))
    if recognizer:
        onnx.save_model(tiny_recognizer(), str(target / RECOGNIZER_FILE))
    (target / NOTICE_FILE).write_text(NOTICE, encoding="utf-8")
    return target
