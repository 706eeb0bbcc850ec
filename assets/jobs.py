"""Studio job assets: each shot of a job painted and gated as its own partition (job x shot),
and the job's export assembled from its settled shots."""

import warnings

import dagster as dg

from assets._helpers import RERUN_TAG, STEP_RETRIES
from assets.partitions import job_shot_partitions, jobs_partitions
from photogen_pipelines import tiers
from photogen_pipelines.analytics.costs import metered
from photogen_pipelines.generation.consistency import check_pack
from photogen_pipelines.imaging.content_credentials import Model
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.export import ModelVersion
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.plan import plan_shots
from photogen_pipelines.jobs.results import assemble_export, reject_stored_shot, save_shot, shot_picture
from photogen_pipelines.jobs.shots import ShotEngines, make_shot
from photogen_pipelines.jobs.states import Job, JobState, ShotState
from photogen_pipelines.logs import log_context
from photogen_pipelines.workflows.jobs import refund_job, shot_inputs
from resources import ArtifactStorage, CatalogResource, FaceEngine, OrdersDatabase, SafetyEngine, StyleEngine, VideoEngine
from resources.credentials import ContentCredentialsResource

JOBS_GROUP = "jobs"
SHOTS_RUN_IN = frozenset({JobState.PAID, JobState.GENERATING})


def _why_not(job: Job, shot: str, tags) -> str | None:
    """Why this run has nothing to make for the shot (None: it has)."""
    names = [s.name for s in job.shots]
    if shot not in names:
        return f"job {job.id} ({job.kind}) has no shot {shot}; its shots: {', '.join(names)}"
    rerun = tags.get(RERUN_TAG, "").lower() == "true"
    if job.state not in SHOTS_RUN_IN and not rerun:
        return f"job {job.id} is {job.state.value}: nothing to do (to retry the shot, run it tagged {RERUN_TAG}=true)"
    if job.shot(shot).state != ShotState.PENDING and not rerun:
        return f"shot {shot} of job {job.id} is {job.shot(shot).state.value} already (retry it tagged {RERUN_TAG}=true)"
    return None


def _models(engines: ShotEngines, kind_gates: list[str], embedded_packshot: bool) -> list[ModelVersion]:
    made_by = [] if embedded_packshot or engines.stylizer is None else [("stylizer", engines.stylizer)]
    if engines.animator is not None:
        made_by = [("animator", engines.animator)]
    checked_by = [("identity check", engines.faces)] if {"identity", "frames_identity"} & set(kind_gates) else []
    if engines.safety is not None:
        checked_by.append(("content safety", engines.safety.detector))
    models = [ModelVersion(role=role, name=engine.name, version=engine.version) for role, engine in made_by + checked_by]
    if embedded_packshot or "product_lock" in kind_gates:
        models.append(ModelVersion(role="segmentation", name="opencv-grabcut", version="imaging/cutout.py"))
    return models


@dg.asset(
    partitions_def=job_shot_partitions,
    group_name=JOBS_GROUP,
    kinds={"image", "opencv"},
    retry_policy=STEP_RETRIES,
    output_required=False,
)
def job_shots(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
    safety: SafetyEngine,
    video: VideoEngine,
    credentials: ContentCredentialsResource,
):
    """One shot of a studio job, painted in its pose and kept only through its kind's gates."""
    job_id, shot_name = (context.partition_key.keys_by_dimension[d] for d in ("job", "shot"))
    database, store = orders.database(), storage.store()
    with log_context(run_id=context.run.run_id, job=context.run.job_name, studio_job=job_id, shot=shot_name):
        job = lifecycle.get(database, job_id, any_caller=True)
        why = _why_not(job, shot_name, context.run.tags)
        if why is not None:
            context.log.info(f"job_shots: {why}")
            return
        if job.shot(shot_name).state != ShotState.PENDING:
            job = lifecycle.retry_shot(database, job_id, shot_name)  # the operator's retry of a settled shot
        lifecycle.start_generating(database, job_id)
        kind = catalog.kinds().get(job.kind)
        planned = {p.name: p for p in plan_shots(catalog.kinds(), kind, job.seed, job.inputs.get("poses"))}[shot_name]
        embedded = job.engine == "embedded"
        tier = catalog.products().tier(job.tier)
        stylizer = styles.stylizer_for(tier.engine, tier.steps) if "mp4" not in kind.outputs else None
        engines = ShotEngines(
            stylizer=stylizer,
            faces=faces.analyzer(),
            safety=safety.gate(catalog.quality()) if "content_safe" in kind.gates else None,
            animator=video.animator() if "mp4" in kind.outputs else None,
            retry_decay=catalog.styles().retry_decay,
        )
        inputs = shot_inputs(database, store, engines.faces, catalog.styles(), job)
        backend = tiers.style_engine(styles.engine_settings(), tier.engine).backend if stylizer else "video"
        outcome, usage = metered(
            stylizer, backend, styles.price_per_second, lambda: make_shot(kind, planned, inputs, engines, embedded)
        )
        models = _models(engines, kind.gates, embedded and kind.id == "fashion_shoot")
        signer = credentials.credentials()
        stored = save_shot(
            store,
            job_id,
            outcome,
            models,
            usage.cost_usd,
            sign=lambda png: signer.sign(png, [Model(m.role, m.version) for m in models], title=f"{job.kind} {shot_name}"),
        )
        record = outcome.record
        lifecycle.settle_shot(
            database, job_id, shot_name, outcome.passed, len(record.attempts), record.attempts[-1].scores, record.reason
        )
    context.log.info(f"job_shots: {job_id} {shot_name} {record.outcome} after {len(record.attempts)} attempt(s)")
    keys = JobKeys(job_id)
    yield dg.MaterializeResult(
        metadata={
            "job": dg.TextMetadataValue(job_id),
            "kind": dg.TextMetadataValue(job.kind),
            "shot": dg.TextMetadataValue(shot_name),
            "outcome": dg.TextMetadataValue(record.outcome),
            "reason": dg.TextMetadataValue(record.reason or ""),
            "made": dg.TextMetadataValue(stored.made),
            "retries": dg.IntMetadataValue(record.retries),
            "seed": dg.IntMetadataValue(record.seed),
            **{
                f"score_{gate}": dg.FloatMetadataValue(value)
                for gate, value in record.attempts[-1].scores.items()
                if value is not None
            },
            "seconds": dg.FloatMetadataValue(stored.seconds),
            "cost_usd": dg.FloatMetadataValue(stored.cost_usd),
            **({"picture": dg.MetadataValue.path(store.uri(keys.shot_picture(shot_name)))} if outcome.passed else {}),
        }
    )


def _impostors(store, job: Job, faces: FaceEngine, catalog: CatalogResource) -> list[tuple[str, str]]:
    """The passing shots that show someone else than the rest of the pack, with why."""
    kind = catalog.kinds().get(job.kind)
    passing = [s.name for s in job.shots if s.state == ShotState.PASSED]
    if "consistency" not in kind.across or len(passing) < 2:
        return []
    pack = check_pack([shot_picture(store, job.id, name) for name in passing], faces.analyzer())
    return [
        (passing[index], f"the shot shows another person than the rest of the pack ({pack.reason})") for index in pack.impostors
    ]


def _shots_of_the_job() -> dg.PartitionMapping:
    """A job's export reads every shot of its own job: the job dimension of the shots'
    partitions. Beta in Dagster 1.13, and the way Dagster maps a multi-partition to one of its
    dimensions: chosen here knowingly, so its beta warning is not repeated on every run's stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="job")


@dg.asset(
    partitions_def=jobs_partitions,
    group_name=JOBS_GROUP,
    kinds={"zip"},
    deps=[dg.AssetDep(job_shots, partition_mapping=_shots_of_the_job())],
    output_required=False,
)
def job_export(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
):
    """A job's delivery: every passing shot at three resolutions and metadata.json, in one ZIP."""
    job_id = context.partition_key
    database, store = orders.database(), storage.store()
    job = lifecycle.get(database, job_id, any_caller=True)
    if job.state != JobState.GENERATING or not job.all_settled:
        pending = [s.name for s in job.shots if s.state == ShotState.PENDING]
        context.log.info(
            f"job_export: job {job_id} is {job.state.value}, pending shots: {pending or 'none'}; nothing to assemble"
        )
        return
    for name, reason in _impostors(store, job, faces, catalog):
        reject_stored_shot(store, job_id, name, reason)
        lifecycle.reject_shot(database, job_id, name, reason)
        context.log.warning(f"job_export: shot {name} of job {job_id} rejected: {reason}")
    job = lifecycle.get(database, job_id, any_caller=True)
    metadata = assemble_export(store, job)
    job = lifecycle.finish(database, job_id)
    if job.state == JobState.REJECTED:
        job = refund_job(database, job_id)
    passed = [s for s in metadata.shots if s.outcome == "passed"]
    yield dg.MaterializeResult(
        metadata={
            "kind": dg.TextMetadataValue(job.kind),
            "job_state": dg.TextMetadataValue(job.state.value),
            "shots": dg.IntMetadataValue(len(metadata.shots)),
            "passed": dg.IntMetadataValue(len(passed)),
            "rejected": dg.IntMetadataValue(len(metadata.shots) - len(passed)),
            "retries": dg.IntMetadataValue(sum(s.retries for s in metadata.shots)),
            "cost_usd": dg.FloatMetadataValue(metadata.cost.usd),
            "engine_seconds": dg.FloatMetadataValue(metadata.cost.seconds),
            "zip": dg.MetadataValue.path(store.uri(JobKeys(job_id).export)),
        }
    )


shot_job = dg.define_asset_job("shot_job", selection=[job_shots], description="One shot of a studio job, painted and gated.")
job_export_job = dg.define_asset_job(
    "job_export_job", selection=[job_export], description="A studio job's ZIP, once its shots settled."
)
jobs_assets = [job_shots, job_export]
