"""The engine service scaled out on a real two-node Ray cluster (a head and a worker node,
two `ray start` processes on this machine, one CPU each): under load Serve adds a style
replica, orders keep flowing while a replica is killed, and it gives the replica back when
the load is gone; each replica loads its models once.

The autoscaling settings are the KubeRay manifest's (deploy/kuberay/rayservice.yaml: min
1, max 2, target 2 ongoing requests per replica, Serve's own 30 s upscale delay), read from
it. One is shortened: the downscale delay, Serve's 600 s, to DOWNSCALE_DELAY_S, or the
test would idle ten minutes to see the replica go. This module runs its own cluster, not
the session's: run it in a pytest session of its own (one small cluster at a time).
"""

from __future__ import annotations

import pytest
import requests

from tests.engine_load import Load, cpu_args, kill_replica, replica_actors, replica_counts, shipped_args
from tests.servers import free_port, ray_two_nodes, serve_application, wait_until

pytestmark = pytest.mark.slow  # a two-node Ray cluster, a load that must last past Serve's upscale delay

DOWNSCALE_DELAY_S = 10.0
CLIENTS = 6  # run workers sending at once: 3x the target of 2 per replica, so the load asks for max_replicas


@pytest.fixture(scope="module")
def scaled_service(tmp_path_factory):
    with ray_two_nodes(tmp_path_factory.mktemp("ray2")) as env:
        args = cpu_args(downscale_delay_s=DOWNSCALE_DELAY_S)
        with serve_application(env, args, free_port()) as url:
            yield url


def _status(url: str) -> dict:
    return requests.get(f"{url}/v1/status", timeout=10).json()


def _serving(url: str) -> set[str]:
    """The style replicas that have painted something."""
    replicas = _status(url)["replicas"].values()
    return {r["replica"] for r in replicas if r["deployment"] == "StyleWorker" and r["requests"]}


def test_the_test_runs_the_manifests_autoscaling_settings():
    shipped = shipped_args()
    args = cpu_args(downscale_delay_s=DOWNSCALE_DELAY_S)
    for setting in ("min_replicas", "max_replicas", "target_ongoing_requests"):
        assert args[setting] == shipped[setting], setting
    assert shipped["max_replicas"] > shipped["min_replicas"]  # there is something to scale
    assert "upscale_delay_s" not in args and "downscale_delay_s" not in shipped


def test_replicas_scale_up_under_load_survive_a_kill_and_scale_back_down(scaled_service):
    url, shipped = scaled_service, shipped_args()
    assert replica_counts() == {"RUNNING": shipped["min_replicas"]}

    load = Load(url, CLIENTS).start()
    try:
        wait_until(lambda: replica_counts().get("RUNNING", 0) == shipped["max_replicas"], 150, "the scale-up")
        # the added replica takes orders of the same style (Serve's style affinity spills past a full replica)
        wait_until(lambda: len(_serving(url)) == shipped["max_replicas"], 60, "the added replica to take orders")
        answered_before_kill = load.answered
        (victim, *_), replicas_before = replica_actors(), set(replica_actors())
        kill_replica(victim)
        # Serve replaces it; meanwhile the other replica takes the load, and the requests the
        # dead one held come back as 503 engine_replica_lost and are sent again by their caller
        # (Serve's counts lag the kill by a moment: the replacement is a replica actor not seen before)
        wait_until(
            lambda: set(replica_actors()) - replicas_before and replica_counts().get("RUNNING", 0) == shipped["max_replicas"],
            120,
            "the killed replica's replacement",
        )
        assert victim not in replica_actors() and len(replica_actors()) == shipped["max_replicas"]
        wait_until(lambda: load.answered > answered_before_kill + 2 * CLIENTS, 60, "orders after the kill")
    finally:
        load.stop()
    assert load.errors == [] and load.wrong == 0  # none lost: every request got its picture
    assert load.answered > 0

    status = _status(url)
    styles = {key: r for key, r in status["replicas"].items() if r["deployment"] == "StyleWorker"}
    # the first replica, the one added under load, the killed one and its replacement: each loaded its models once
    assert len(styles) >= 3 and all(r["model_loads"] == 1 for r in styles.values()), styles
    assert sum(r["requests"] for r in styles.values()) >= load.answered
    assert len({r["node"] for r in styles.values()}) == 2  # replicas ran on both nodes

    wait_until(lambda: replica_counts() == {"RUNNING": shipped["min_replicas"]}, 120, "the scale-down once idle")
