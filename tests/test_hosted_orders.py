"""An order's proof run on RunPod's hosted Qwen-Image-Edit-2511 (`PHOTOGEN_ENGINE=runpod-qwen-edit`),
in process (Dagster's materialize on a real instance), against the loopback fake of the
public endpoint (tests/fake_runpod_qwen.py: the queue API of tests/fake_runpod.py and a
handler that checks the documented input): the proofs are painted there and pass our
identity gate, each picture's cost reaches the order's usage, and a step run again pays for
nothing twice."""

from __future__ import annotations

import dagster as dg
import pytest

import assets
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.storage.artifacts import CandidatesInfo, OrderKeys, Validation
from tests.fake_runpod_qwen import QwenEditWorker, qwen_endpoint

pytestmark = pytest.mark.slow  # whole proof runs through Dagster on the hosted engine

ALL_ASSETS = [*assets.proof_assets, *assets.print_assets, *assets.order_checks]


def test_a_proof_run_on_the_hosted_qwen_engine_is_costed_per_picture_and_never_paid_twice(tmp_path, astronaut_png):
    worker = QwenEditWorker(scale=2)  # a face the identity gate can still find
    with qwen_endpoint(worker) as runpod, dg.DagsterInstance.ephemeral() as instance:
        defs = build_defs(
            str(tmp_path / "home"), engine="runpod-qwen-edit", runpod_api_key=runpod.api_key, runpod_api_base=runpod.api_base
        )
        order = register_local_order(defs, astronaut_png, "sepia_oil", "poster_a3", 2, approval="auto")
        instance.add_dynamic_partitions("orders", [order.id])
        store = defs.resources["storage"].store()
        for selection in ([assets.selfie], [assets.styled_candidates]):
            run = dg.materialize(
                ALL_ASSETS, selection=selection, partition_key=order.id, instance=instance, resources=defs.resources
            )
            assert run.success
        painted = OrderKeys(order.id).load(store, CandidatesInfo)
        assert painted.engine.startswith("runpod public endpoint qwen-image-edit-2511")
        assert len(runpod.submissions) == 2  # one job per variant
        assert all(given["size"] in {"1024*1024", "1024*1280", "1280*1024"} for given in worker.seen)
        assert painted.usage.predictions == 2 and painted.usage.cost_usd == pytest.approx(0.04)

        # an operator runs the step again (or Dagster retries it after a crash): read back, not paid
        run = dg.materialize(
            ALL_ASSETS, selection=[assets.styled_candidates], partition_key=order.id, instance=instance, resources=defs.resources
        )
        assert run.success and len(runpod.submissions) == 2
        again = OrderKeys(order.id).load(store, CandidatesInfo)
        assert again.usage.predictions == 0 and again.usage.reused == 2 and again.usage.cost_usd == 0.0

        # our identity gate judges what the hosted model painted
        run = dg.materialize(
            ALL_ASSETS, selection=[assets.validated_proofs], partition_key=order.id, instance=instance, resources=defs.resources
        )
        assert run.success
    validation = OrderKeys(order.id).load(store, Validation)
    assert validation.best_similarity() >= validation.threshold
