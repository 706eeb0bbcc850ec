"""Inputs every Upscaler must refuse with a clear ValueError (the embedded and the torch engine)."""

import numpy as np

BAD_UPSCALE_INPUTS = [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    ([[0, 0, 0]], "uint8"),
    (np.zeros((8, 8), np.uint8), "HxWx3"),
    (np.zeros((8, 8, 4), np.uint8), "HxWx3"),
    (np.zeros((0, 8, 3), np.uint8), "HxWx3"),
]
