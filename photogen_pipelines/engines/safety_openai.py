"""The hosted safety detector: OpenAI's moderation endpoint (`POST /v1/moderations`,
https://platform.openai.com/docs/api-reference/moderations) with `omni-moderation-latest`,
which takes an image as a data URL.

The picture goes as a JPEG data URL at most `MAX_SIDE` px on its long side (the model
classifies, it needs no print pixels). `explicit` is the result's `sexual` category score;
a positive `sexual/minors` (its category flagged by the model) refuses the picture
outright, whatever the threshold: every score is a small positive number, so the flag is
the model's own verdict. Every call goes through http.py; a moderation classifies and changes nothing,
so a call is safe to repeat after a rate limit or a lost connection.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from photogen_pipelines.engines.base import SafetyScore, check_safety_input
from photogen_pipelines.errors import ModelError
from photogen_pipelines.http import HttpClient, NoAnswer, RetryPolicy, Timeout
from photogen_pipelines.imaging.images import fit_long_side

DEFAULT_API_BASE = "https://api.openai.com/v1"
MAX_SIDE = 1024
REQUEST_TIMEOUT = Timeout(5.0, 30.0)
RETRY = RetryPolicy(attempts=4, backoff=1.0, max_backoff=8.0)  # 429 and 5xx gateways, as Retry-After says
SEXUAL, MINORS = "sexual", "sexual/minors"


class OpenAiModeration:
    """OpenAI's moderation of one picture: `sexual` as `explicit`, every category's score as labels."""

    name = "openai-moderation"

    def __init__(self, api_key: str, *, model: str = "omni-moderation-latest", api_base: str = DEFAULT_API_BASE, session=None):
        if not api_key:
            raise ModelError("the openai-moderation safety backend needs an API key (PHOTOGEN_OPENAI_API_KEY)")
        self.model = model
        self.version = f"openai/{model}"
        self.client = HttpClient(
            api_base, headers={"Authorization": f"Bearer {api_key}"}, timeout=REQUEST_TIMEOUT, retry=RETRY, session=session
        )

    def score(self, rgb: np.ndarray) -> SafetyScore:
        check_safety_input(rgb)
        body = {"model": self.model, "input": [{"type": "image_url", "image_url": {"url": data_url(rgb)}}]}
        try:
            answer = self.client.post("/moderations", json=body, idempotent=True)
        except NoAnswer as exc:
            raise ModelError(f"OpenAI moderation did not answer: {exc}", code="safety_unavailable") from exc
        if answer.status_code != 200:
            raise ModelError(
                f"OpenAI moderation answered {answer.status_code}: {_error_message(answer)}", code="safety_unavailable"
            )
        try:
            result = answer.json()["results"][0]
            scores = {str(k): float(v) for k, v in result["category_scores"].items()}
            explicit = scores[SEXUAL]
            minors = result.get("categories", {}).get(MINORS) is True
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError(f"OpenAI moderation's answer has no {SEXUAL!r} score: {exc!r}", code="safety_unavailable") from exc
        refused = f"{MINORS} flagged, scored {scores.get(MINORS, 0.0):.4f}" if minors else None
        return SafetyScore(explicit=round(explicit, 4), labels={k: round(v, 4) for k, v in scores.items()}, refused=refused)


def data_url(rgb: np.ndarray) -> str:
    """The picture as a `data:image/jpeg;base64,...` URL, its long side at most MAX_SIDE."""
    image = Image.fromarray(rgb)
    if max(image.size) > MAX_SIDE:
        image = image.resize(fit_long_side(image.size, MAX_SIDE), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _error_message(answer) -> str:
    """OpenAI's `{"error": {"message": ...}}`, or the start of whatever came back."""
    try:
        return str(answer.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return answer.text[:300]
