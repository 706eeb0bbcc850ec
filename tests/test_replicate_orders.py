"""An order's proof run on the Replicate backend, in process (Dagster's materialize on a real
instance), against the loopback fake of tests/fake_replicate.py: a safety refusal rejects the
order with its reason at once, and a retried step pays for nothing twice."""

from __future__ import annotations

import dagster as dg
import pytest

import assets
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import CandidatesInfo, OrderKeys
from tests.fake_replicate import TOKEN, FakeReplicate

pytestmark = pytest.mark.slow  # whole proof runs through Dagster on the Replicate backend

ALL_ASSETS = [*assets.proof_assets, *assets.print_assets, *assets.order_checks]


def _defs(tmp_path, replicate: FakeReplicate):
    return build_defs(str(tmp_path / "home"), engine="replicate", replicate_api_token=TOKEN, replicate_api_base=replicate.url)


def test_a_safety_refusal_rejects_the_order_with_its_reason_without_retrying(tmp_path, astronaut_png):
    with FakeReplicate() as replicate, dg.DagsterInstance.ephemeral() as instance:
        defs = _defs(tmp_path, replicate)
        order = register_local_order(defs, astronaut_png, "sepia_oil", "poster_a3", 2, approval="auto")
        instance.add_dynamic_partitions("orders", [order.id])
        replicate.fail_next("NSFW content detected. Try running it again, or try a different prompt.")
        run = dg.materialize(
            ALL_ASSETS,
            selection=assets.proof_assets,
            partition_key=order.id,
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
        # the round's two predictions (one per variant, FLUX.2 [klein]), not retried: another
        # try cannot change the verdict
        assert not run.success and replicate.created == 2
    rejected = defs.resources["orders"].book().get(order.id)
    assert rejected.state == OrderState.REJECTED and rejected.reason.startswith("content_refused:")


def test_a_styled_candidates_step_run_again_pays_for_no_second_prediction(tmp_path, astronaut_png):
    with FakeReplicate() as replicate, dg.DagsterInstance.ephemeral() as instance:
        defs = _defs(tmp_path, replicate)
        order = register_local_order(defs, astronaut_png, "sepia_oil", "poster_a3", 2, approval="auto")
        instance.add_dynamic_partitions("orders", [order.id])
        # the order's selfie, then its candidates twice: an operator re-runs the step (or Dagster
        # retries it after a crash)
        for selection in ([assets.selfie], [assets.styled_candidates], [assets.styled_candidates]):
            run = dg.materialize(
                ALL_ASSETS,
                selection=selection,
                partition_key=order.id,
                instance=instance,
                resources=defs.resources,
            )
            assert run.success
        assert replicate.created == 2  # one per variant, once
    again = OrderKeys(order.id).load(defs.resources["storage"].store(), CandidatesInfo)
    assert again.usage.predictions == 0 and again.usage.reused == 2 and again.usage.cost_usd == 0.0
