"""How pictures travel to and from the engine service: one `.npz` body per message.

Raw uint8 arrays, not PNG: encoding a 4096-px print pass as PNG costs seconds on each
side, and the service sits next to the runs (the same box, or the same cluster). The
request's own fields ride along as a JSON document inside the archive, so one body is
one message, whatever the transport.
"""

from __future__ import annotations

import io
import json

import numpy as np

from photogen_pipelines.errors import BadInput

FIELDS = "fields.json"
MEDIA_TYPE = "application/x-npz"


def pack(fields: dict, images: list[np.ndarray]) -> bytes:
    arrays = {f"image_{index}": np.ascontiguousarray(image, dtype=np.uint8) for index, image in enumerate(images)}
    arrays[FIELDS] = np.frombuffer(json.dumps(fields).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack(body: bytes) -> tuple[dict, list[np.ndarray]]:
    """The fields and the images of a body `pack` made; anything else is BadInput."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            fields = json.loads(archive[FIELDS].tobytes()) if FIELDS in archive.files else {}
            count = sum(1 for name in archive.files if name.startswith("image_"))
            images = [archive[f"image_{index}"] for index in range(count)]
    except (ValueError, OSError, KeyError, EOFError, json.JSONDecodeError) as exc:
        raise BadInput(f"not an engine message: {exc}", code="bad_engine_message") from None
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BadInput(f"engine images are HxWx3 uint8, got {image.dtype} {image.shape}", code="bad_engine_message")
    if not isinstance(fields, dict):
        raise BadInput("engine message fields must be a JSON object", code="bad_engine_message")
    return fields, images
