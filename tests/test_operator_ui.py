"""The Dagster UI as an operator sees it (issue 29 §10): the shipped instances open on the
asset graph, not on a community dialog; an order that will never be printed is no missing
`printing` partition; "Materialize all" over every order regenerates (and pays for) none of
them; every order's runs and materializations say what the order is."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

import assets
from assets._helpers import RERUN_TAG
from assets.printing import PRINTING
from assets.proofs import PROOFS
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.orders.states import Order, OrderState
from sensors import approved_orders, paid_orders
from tests.dagster_helpers import INSTANCE_ENV, local_instance

S = OrderState
REPO = Path(__file__).parents[1]
UI_LIMITS = [
    {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
    {"key": "dagster/backfill", "limit": 1},
]
# the way each order gets to where the test needs it (the assets' and API's moves, without
# the pictures: a step that has nothing to do never reads them)
PATHS = {
    S.PAID: [S.PAID],
    S.PROOFS_READY: [S.PAID, S.GENERATING, S.PROOFS_READY],
    S.APPROVED: [S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED],
    S.READY: [S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY],
    S.CANCELLED: [S.PAID, S.GENERATING, S.PROOFS_READY, S.CANCELLED],
}


# -- the shipped instances --------------------------------------------------------------------


def test_the_local_instance_loads_without_the_community_dialog_and_with_the_ui_limits(tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False  # what the webserver asks before showing the dialog
        limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
    for limit in UI_LIMITS:
        assert limit in limits


def test_the_production_instance_turns_the_community_dialog_off_too(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(REPO / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's own validation of the file
    assert config["nux"] == {"enabled": False}
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    for limit in UI_LIMITS:
        assert limit in limits


# -- an order's partitions ---------------------------------------------------------------------


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """The code location on its own home (orders database included) and a real instance."""
    monkeypatch.delenv("PHOTOGEN_DATABASE_URL", raising=False)
    monkeypatch.setenv("PHOTOGEN_HOME", str(tmp_path / "home"))
    defs = build_defs(str(tmp_path / "home"))
    defs.resources["orders"].database().migrate()
    with local_instance(tmp_path / "dagster") as instance:
        yield defs, instance


def _order(defs, state: OrderState, style_id: str = "ink_etching", tier: str | None = None) -> str:
    book = defs.resources["orders"].book()
    order = book.add(Order(style_id=style_id, product_id="poster_a3", tier=tier, upload_key="uploads/x.png", variants=1))
    for step in PATHS[state]:
        if step == S.APPROVED:
            book.update(order.id, lambda o: (setattr(o, "approved_proof", 0), o.transition(S.APPROVED)))
        else:
            book.transition(order.id, step)
    return order.id


def _tick(sensor, defs, instance) -> dg.SensorResult:
    """One tick of an order sensor, its partition requests applied as the daemon applies them."""
    with dg.build_sensor_context(instance=instance, resources={"orders": defs.resources["orders"]}) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


PARTITION_STATS = """
query Stats($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode { partitionStats { numMaterialized numMaterializing numFailed numPartitions } }
  }
}"""


def _ui_partition_stats(instance, *asset_names: str) -> dict[str, dict]:
    """The counts the UI colours assets' partitions by, from the webserver's own GraphQL over
    the code location as `workspace.yaml` loads it (a code server process)."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    stats = {}
    with define_out_of_process_context(str(REPO / "workspace.yaml"), None, instance) as context:
        for name in asset_names:
            result = execute_dagster_graphql(context, PARTITION_STATS, variables={"assetKey": {"path": [name]}})
            stats[name] = result.data["assetNodeOrError"]["partitionStats"]
    return stats


def test_a_cancelled_order_is_no_missing_printing_partition_and_an_approved_one_is_one(shop):
    defs, instance = shop
    approved, cancelled, waiting = _order(defs, S.PAID), _order(defs, S.PAID), _order(defs, S.PAID)
    _tick(paid_orders, defs, instance)  # all three paid: three proof runs, three `orders` partitions
    book = defs.resources["orders"].book()
    for order_id in (approved, cancelled, waiting):
        for state in (S.GENERATING, S.PROOFS_READY):
            book.transition(order_id, state)
    book.update(approved, lambda o: (setattr(o, "approved_proof", 0), o.transition(S.APPROVED)))
    book.transition(cancelled, S.CANCELLED, reason="the customer cancelled at the proofs")
    (print_run,) = _tick(approved_orders, defs, instance).run_requests
    assert print_run.partition_key == approved

    proofs = assets.orders_partitions.get_partition_keys(dynamic_partitions_store=instance)
    printing = assets.approved_orders_partitions.get_partition_keys(dynamic_partitions_store=instance)
    assert sorted(proofs) == sorted([approved, cancelled, waiting])
    assert printing == [approved]  # neither the cancelled order nor the one still choosing
    print_checks = [assets.upscale_faithful, assets.print_detail_clean, assets.print_spec_met, assets.provider_accepted]
    for definition in [*assets.print_assets, *print_checks]:
        assert definition.partitions_def == assets.approved_orders_partitions

    # what the UI counts: one printing partition, the approved order's (missing only until its
    # print run has run), and all three orders' proofs
    stats = _ui_partition_stats(instance, "print_master", "fulfilment", "selfie")
    assert stats["print_master"] == {"numMaterialized": 0, "numMaterializing": 0, "numFailed": 0, "numPartitions": 1}
    assert stats["fulfilment"]["numPartitions"] == 1
    assert stats["selfie"]["numPartitions"] == 3


def test_an_upgraded_instance_gets_the_printing_partitions_of_orders_approved_before(shop):
    """An instance from before `approved_orders` existed: the sensor's cursor is past the old
    approvals. Its first tick adds them all, once; a cancelled order stays out."""
    defs, instance = shop
    ready, shipped_earlier, cancelled = _order(defs, S.READY), _order(defs, S.APPROVED), _order(defs, S.CANCELLED)
    with dg.build_sensor_context(instance=instance, resources={"orders": defs.resources["orders"]}) as context:
        cursor = approved_orders(context).cursor  # what the old sensor had reached
    with dg.build_sensor_context(instance=instance, resources={"orders": defs.resources["orders"]}, cursor=cursor) as context:
        upgraded = approved_orders(context)
    assert upgraded.run_requests == []  # their runs ran long ago: only the partitions come back
    (request,) = upgraded.dynamic_partitions_requests
    assert sorted(request.partition_keys) == sorted([ready, shipped_earlier]) and cancelled not in request.partition_keys
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    with dg.build_sensor_context(instance=instance, resources={"orders": defs.resources["orders"]}, cursor=cursor) as context:
        assert approved_orders(context).dynamic_partitions_requests == []  # once


def test_the_first_approval_on_a_new_instance_asks_for_its_partition_once(shop):
    """A new instance's sensor has ticked (a cursor) before anything was approved: the first
    approval is both new and "before the partitions"; the request names it once (Dagster
    fails a tick whose request names a key twice)."""
    defs, instance = shop
    _tick(approved_orders, defs, instance)  # nothing yet: the cursor is set
    with dg.build_sensor_context(instance=instance, resources={"orders": defs.resources["orders"]}) as context:
        cursor = approved_orders(context).cursor
    first = _order(defs, S.APPROVED)
    with dg.build_sensor_context(instance=instance, resources={"orders": defs.resources["orders"]}, cursor=cursor) as context:
        result = approved_orders(context)
    (request,) = result.dynamic_partitions_requests
    assert list(request.partition_keys) == [first]
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))  # as the daemon does


def test_the_print_assets_read_the_proofs_of_the_same_order():
    mapping = assets.print_master.get_partition_mapping(assets.validated_proofs.key)
    assert isinstance(mapping, dg.IdentityPartitionMapping)  # the lineage joins each order to itself


# -- "Materialize all" --------------------------------------------------------------------------


def _messages(instance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def _materialize_every_partition(defs, instance, job_name: str, tags: dict | None = None) -> dict[str, dg.ExecuteInProcessResult]:
    """A run of `job_name` for each of its partitions, as a UI backfill over all of them launches."""
    job = defs.resolve_job_def(job_name)
    keys = job.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    return {key: job.execute_in_process(partition_key=key, instance=instance, tags=tags or {}) for key in keys}


def test_materialize_all_regenerates_no_order_whose_state_does_not_call_for_it_and_says_why(shop):
    defs, instance = shop
    book = defs.resources["orders"].book()
    ids = {state: _order(defs, state) for state in (S.PROOFS_READY, S.READY, S.CANCELLED)}
    instance.add_dynamic_partitions("orders", list(ids.values()))
    instance.add_dynamic_partitions("approved_orders", [ids[S.READY]])
    history = {state: len(book.get(order_id).events) for state, order_id in ids.items()}

    for job_name in ("proof_job", "print_job"):
        for order_id, run in _materialize_every_partition(defs, instance, job_name).items():
            assert run.success, (job_name, order_id)  # calm: no failed run, no red partition
            assert run.get_asset_materialization_events() == []  # nothing re-made, nothing paid for
            skipped = {e.step_key for e in run.all_events if e.event_type == dg.DagsterEventType.STEP_SKIPPED}
            first = "selfie" if job_name == "proof_job" else "print_master"
            assert first not in skipped and skipped  # the first step said no; the others never started
            said = " ".join(_messages(instance, run.run_id))
            assert f"order {order_id} is {book.get(order_id).state.value}: nothing" in said

    assert {state: len(book.get(order_id).events) for state, order_id in ids.items()} == history
    said = " ".join(m for r in instance.get_runs() for m in _messages(instance, r.run_id))
    # proofs awaiting the customer, a ready print file: an operator's tag would redo them
    assert f"order {ids[S.PROOFS_READY]} is proofs_ready: nothing to redo" in said
    assert f"order {ids[S.READY]} is ready: nothing to redo" in said
    assert f"{RERUN_TAG}=true" in said
    # a cancelled order: nothing to do, tag or no tag
    assert f"order {ids[S.CANCELLED]} is cancelled: nothing to do" in said
    tagged = defs.resolve_job_def("proof_job").execute_in_process(
        partition_key=ids[S.CANCELLED], instance=instance, tags={RERUN_TAG: "true"}
    )
    assert tagged.success and tagged.get_asset_materialization_events() == []
    assert book.get(ids[S.CANCELLED]).state == S.CANCELLED


def test_the_rerun_tag_redoes_only_what_the_state_machine_allows():
    def order(state: OrderState) -> Order:
        return Order(id="ord_x", style_id="ink_etching", product_id="poster_a3", upload_key="u", state=state)

    tag = {RERUN_TAG: "true"}
    # their own runs (and the retries of them) need no tag
    assert PROOFS.nothing_to_do(order(S.PAID), {}) is None and PROOFS.nothing_to_do(order(S.GENERATING), {}) is None
    assert PRINTING.nothing_to_do(order(S.APPROVED), {}) is None and PRINTING.nothing_to_do(order(S.RENDERING), {}) is None
    # the operator's regeneration of unapproved proofs and re-render of a ready file need it
    assert PROOFS.nothing_to_do(order(S.PROOFS_READY), {}) and PROOFS.nothing_to_do(order(S.PROOFS_READY), tag) is None
    assert PRINTING.nothing_to_do(order(S.READY), {}) and PRINTING.nothing_to_do(order(S.READY), tag) is None
    # past that, no tag sends an order back
    for state in (S.APPROVED, S.READY, S.SUBMITTED, S.CANCELLED, S.REJECTED, S.REFUNDED):
        assert PROOFS.nothing_to_do(order(state), tag)
    for state in (S.PAID, S.PROOFS_READY, S.SUBMITTED, S.FAILED, S.CANCELLED):
        assert PRINTING.nothing_to_do(order(state), tag)


# -- what a partition is -----------------------------------------------------------------------


def test_order_runs_and_materializations_name_the_orders_style_product_tier_and_state(shop):
    defs, instance = shop
    paid = _order(defs, S.PAID, style_id="sepia_oil")
    (proof_run,) = _tick(paid_orders, defs, instance).run_requests
    assert {k: v for k, v in proof_run.tags.items() if k.startswith("photogen/")} == {
        "photogen/order": paid,
        "photogen/style": "sepia_oil",
        "photogen/product": "poster_a3",
        "photogen/tier": "default",
    }

    ready = _order(defs, S.READY)
    instance.add_dynamic_partitions("approved_orders", [ready])
    # no print provider configured: fulfilment records that the file waits for download
    run = defs.resolve_job_def("print_job").execute_in_process(
        partition_key=ready, instance=instance, op_selection=["fulfilment"]
    )
    (materialization,) = run.asset_materializations_for_node("fulfilment")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert {k: metadata[k] for k in ("style", "product", "tier", "order_state", "status")} == {
        "style": "ink_etching",
        "product": "poster_a3",
        "tier": "default",
        "order_state": "ready",
        "status": "not_sent",
    }
