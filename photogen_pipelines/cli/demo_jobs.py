"""`photogen demo --kind KIND`: one studio job, placed and run shot by shot on this machine's
Dagster instance, as the shop's sensors would run it: one `shot_job` run per shot (each its
own job x shot partition), then `job_export_job` for the ZIP.

The operator's own local run: the photos are taken with consent (as `photogen demo --selfie`
asks nothing) and payments are off. A living portrait first runs a portrait order through its
proof job (approval auto) and animates the approved proof.
"""

from __future__ import annotations

import os
import shlex
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

from photogen_pipelines.catalog.kinds import Kind
from photogen_pipelines.cli.common import photogen_command
from photogen_pipelines.errors import BadInput
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.states import Job, JobState

# how a shot's scores read in a line (gate score -> words)
SCORE_WORDS = {"identity": "identity", "product_ssim": "product SSIM", "lowest_frame_identity": "lowest frame identity"}
SHOT_RUN, EXPORT_RUN = "shot_job", "job_export_job"


@dataclass(frozen=True)
class JobDemo:
    """What the operator asked for: the kind and its inputs."""

    kind: Kind
    selfie: bytes
    garment: bytes | None  # the product's or garment's photo, for the kinds that take one
    poses: tuple[str, ...] | None
    style_id: str
    product_id: str  # a living portrait's print order
    variants: int


def default_garment() -> bytes:
    """scikit-image's coffee cup photo: a product on a plain table, as a PNG."""
    from skimage import data

    from photogen_pipelines.imaging.images import png_bytes

    return png_bytes(data.coffee())


def check_options(kind: Kind, engine: str, video_models: str | None, garment: str | None, poses: tuple[str, ...] | None):
    """Refuse what the kind cannot take, and a kind the engines cannot make, before any work."""
    takes = {i.type for i in kind.inputs}
    if garment and not takes & {"product_photo", "garment_photo"}:
        raise BadInput(f"--garment is for the kinds that take a product photo; a {kind.id} takes none", code="option_not_used")
    if poses and "poses" not in takes:
        raise BadInput(f"--poses is for the kinds with poses; a {kind.id}'s shots are {kind.shots}", code="option_not_used")
    if "mp4" in kind.outputs:
        if not video_models:
            raise BadInput(
                f"a {kind.id} needs the {', '.join(kind.engines)} engine: --video-models DIR or PHOTOGEN_VIDEO_MODELS_DIR "
                "(`photogen dev make-tiny-models --family wan-i2v DIR` writes a tiny one)",
                code="kind_needs_engine",
            )
        _check_video_models(video_models)
        kind.check_engine("wan-i2v")
    else:
        kind.check_engine(engine)


def _check_video_models(models_dir: str) -> None:
    from photogen_pipelines.engines.video_wan import missing_files

    missing = missing_files(Path(models_dir))
    if missing:
        raise BadInput(f"the video models folder {models_dir} lacks: " + "; ".join(missing), code="models_incomplete")


def run_job_demo(defs, request: JobDemo, engine: str, video_engine: str | None, progress) -> Job:
    """Place the job and run it on the local Dagster instance: the job as it ended."""
    import dagster as dg

    from photogen_pipelines.generation.safety import safety_gate
    from photogen_pipelines.jobs import lifecycle
    from photogen_pipelines.orders.uploads import take_product_photo, take_upload
    from photogen_pipelines.workflows.jobs import JobRequest, Placement, place_job

    resources = defs.resources
    catalog = resources["catalog"]
    database, store = resources["orders"].database(), resources["storage"].store()
    database.migrate()
    place = Placement(
        database, store, resources["faces"].analyzer(), catalog.kinds(), catalog.styles(), catalog.products(),
        engine=engine, video_engine=video_engine, payments_on=False,
    )  # fmt: skip
    kind = request.kind
    takes = {i.type for i in kind.inputs}
    fields: dict = {"kind": kind.id, "payment": "off", "poses": request.poses}
    with dg.DagsterInstance.get() as instance:
        if "approved_portrait" in takes:
            fields["portrait_order_id"] = _approved_portrait(defs, instance, request, progress)
        safety = safety_gate(resources["safety"].detector(), catalog.quality(), "upload")  # as the API's uploads
        if "person" in takes:
            person = take_upload(database, store, place.faces, request.selfie, consent=True, safety=safety)
            fields["upload_ids"] = (person.id,)
        if takes & {"product_photo", "garment_photo"}:
            fields["product_upload_id"] = take_product_photo(database, store, request.garment, safety=safety).id
        if "style" in takes:
            fields["style_id"] = request.style_id
        job = place_job(place, JobRequest(**fields), None, f"demo-{uuid.uuid4().hex}").job
        names = ", ".join(s.name for s in job.shots)
        shots = f"{len(job.shots)} shot{'s' if len(job.shots) != 1 else ''}"
        progress(f"job {job.id}: {kind.id}, {shots} on the {job.engine} engine ({names})")
        progress(f"{SHOT_RUN}, then {EXPORT_RUN}: running on the Dagster instance at {instance.root_directory}")
        instance.add_dynamic_partitions("jobs", [job.id])
        for number, shot in enumerate(job.shots, 1):
            _execute(defs, instance, SHOT_RUN, dg.MultiPartitionKey({"job": job.id, "shot": shot.name}))
            settled = lifecycle.get(database, job.id, any_caller=True).shot(shot.name)
            progress(f"shot {number}/{len(job.shots)} {shot.name}: {settled.state.value} ({_scores_or_reason(settled)})")
        _execute(defs, instance, EXPORT_RUN, job.id)
        job = lifecycle.get(database, job.id, any_caller=True)
        progress(f"{EXPORT_RUN}: job {job.state.value}")
    return job


def _approved_portrait(defs, instance, request: JobDemo, progress) -> str:
    """A portrait order run through its proof job with approval auto: the order whose
    approved proof the living portrait animates."""
    from photogen_pipelines.cli.local_runs import run_order_job
    from photogen_pipelines.definitions import register_local_order
    from photogen_pipelines.orders.states import OrderState

    book = defs.resources["orders"].book()
    order = register_local_order(defs, request.selfie, request.style_id, request.product_id, request.variants, approval="auto")
    progress(f"order {order.id}: {request.style_id}, {request.variants} proofs, for the portrait to animate")
    instance.add_dynamic_partitions("orders", [order.id])
    order = run_order_job(defs, instance, book, "proof_job", order.id)
    if order.state != OrderState.APPROVED:
        why = f"order {order.id} ended {order.state.value} ({order.reason}): no proof to animate"
        raise BadInput(why, code="portrait_not_approved")
    progress(f"auto-approved proof {order.approved_proof}: animating it")
    return order.id


def _execute(defs, instance, job_name: str, partition_key: str) -> None:
    """One run in this process; PhotoGenError naming the first cause when it fails."""
    from photogen_pipelines.cli.local_runs import execute_run, failed_run

    result = execute_run(defs, instance, job_name, partition_key)
    if not result.success:
        raise failed_run(job_name, result)


def _scores_or_reason(shot) -> str:
    if shot.state.value == "rejected":
        return f"after {shot.tries} {'try' if shot.tries == 1 else 'tries'}: {shot.reason}"
    shown = [f"{SCORE_WORDS[k]} {v:.2f}" for k, v in (shot.scores or {}).items() if k in SCORE_WORDS and v is not None]
    return ", ".join(shown) or "no score to show"


def job_summary(job: Job, kind: Kind, store, out: Path, dagster_home: Path, seconds: float) -> dict:
    """The job as the demo reports it, its files copied to OUT/<job id>/."""
    from photogen_pipelines.jobs.results import stored_shot

    keys, folder = JobKeys(job.id), out / job.id

    def export(key: str, name: str) -> str:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.path(key), target)
        return str(target)

    shots = []
    for shot in job.shots:
        stored = stored_shot(store, job.id, shot.name)
        files = []
        if shot.state.value == "passed" and store.exists(keys.shot_picture(shot.name)):
            if stored is not None and stored.video:
                files.append(export(keys.shot_video(shot.name), f"shots/{shot.position:02d}_{shot.name}.mp4"))
                files.append(export(keys.shot_picture(shot.name), f"shots/{shot.position:02d}_{shot.name}_poster.png"))
            else:
                files.append(export(keys.shot_picture(shot.name), f"shots/{shot.position:02d}_{shot.name}.png"))
        shots.append(
            {
                "name": shot.name,
                "position": shot.position,
                "outcome": shot.state.value,
                "tries": shot.tries,
                "scores": shot.scores or {},
                "reason": shot.reason,
                "files": files,
                "made": stored.made if stored is not None else None,
            }
        )
    made_zip = job.state in (JobState.READY, JobState.REJECTED) and store.exists(keys.export)
    return {
        "job": job.id,
        "kind": job.kind,
        "state": job.state.value,
        "reason": job.reason,
        "engine": job.engine,
        "embedded": kind.embedded if job.engine == "embedded" else None,  # what the CPU engine makes of the kind
        "portrait_order": job.inputs.get("portrait_order_id"),
        "seconds": round(seconds, 2),
        "zip": export(keys.export, "export.zip") if made_zip else None,
        "shots": shots,
        "out": str(folder),
        "dagster_home": str(dagster_home),
    }


def print_job_summary(summary: dict) -> None:
    """A few readable lines, in the order demo's tone."""
    folder = Path(summary["out"])

    def shown(path: str) -> str:
        return str(Path(path).relative_to(folder))

    reason = f", {summary['reason']}" if summary["reason"] else ""
    click.echo(f"\nJob {summary['job']}: {summary['state']} ({summary['kind']}{reason})")
    if summary["zip"] or any(s["files"] for s in summary["shots"]):
        click.echo(f"  files copied to {folder}{os.sep}")
    else:
        click.echo("  no files to copy")
    if summary.get("embedded"):
        click.echo(f"  the embedded engine made {summary['embedded']}")
    if summary.get("portrait_order"):
        click.echo(f"  animated: the approved proof of order {summary['portrait_order']}")
    for shot in summary["shots"]:
        if shot["outcome"] == "passed":
            scores = ", ".join(
                f"{SCORE_WORDS[k]} {v:.2f}" for k, v in shot["scores"].items() if k in SCORE_WORDS and v is not None
            )
            files = "  ".join(shown(f) for f in shot["files"])
            click.echo(f"  shot {shot['position']} {shot['name']}: passed" + (f", {scores}" if scores else "") + f"  {files}")
        else:
            tries = f"{shot['tries']} {'try' if shot['tries'] == 1 else 'tries'}"
            click.echo(f"  shot {shot['position']} {shot['name']}: {shot['outcome']} after {tries}: {shot['reason']}")
        if shot["made"]:
            click.echo(f"      {shot['made']}")
    if summary["zip"]:
        click.echo(f"  export:     {shown(summary['zip'])}  (each passing shot at full size, 2048 px and 1024 px; metadata.json)")
        click.echo(f"  signed:     Content Credentials (C2PA); check: {photogen_command()} credentials verify FILE")
    click.echo(f"  time: {summary['seconds']:.1f} s in all, with start-up and model loading")
    ui = f"{photogen_command()} ui --home {shlex.quote(summary['home'])}" if summary.get("home") else "photogen ui"
    click.echo(f"  see the runs: {ui}  (Dagster instance {summary['dagster_home']})")
