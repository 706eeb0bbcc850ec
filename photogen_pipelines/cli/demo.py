"""`photogen demo`: one real order, start to finish, on this machine's Dagster instance."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from pathlib import Path

import click

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.cli.common import (
    clear_errors,
    home_option,
    local_home,
    output_folder,
    photogen_command,
    read_image_file,
)
from photogen_pipelines.cli.instance import use_local_instance
from photogen_pipelines.cli.licences import require_commercial_configuration
from photogen_pipelines.cli.local_runs import progress, run_order_job
from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation import takes
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.settings import LocalPaths, PhotoGenSettings
from photogen_pipelines.storage.artifacts import CandidatesInfo, Manifest, OrderKeys, Validation


def default_selfie() -> bytes:
    from skimage import data

    from photogen_pipelines.imaging.images import png_bytes

    return png_bytes(data.astronaut())


@click.command()
@click.option("--selfie", type=click.Path(dir_okay=False), help="A photo of one person (default: scikit-image's astronaut).")
@click.option("--style", "style_id", default="starry_swirl", show_default=True, help="A style id from `photogen styles`.")
@click.option("--product", "product_id", default="poster_12x18", show_default=True, help="A product id from `photogen products`.")
@click.option("--variants", type=click.IntRange(1, 8), default=4, show_default=True, help="How many proofs to generate.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to copy proofs and the print file (into OUT/<order id>/) "
    "[default: photogen-demo/ in the home given by --home or PHOTOGEN_HOME, else ./photogen-demo].",
)
@home_option
@click.option(
    "--engine",
    type=click.Choice(["embedded", "diffusers", "flux2-klein", "qwen-edit", "replicate", "runpod", "runpod-qwen-edit"]),
    default=None,
    help="embedded: CPU models shipped in the wheels (default). diffusers: SDXL + InstantID, "
    "insightface, Real-ESRGAN in torch, from --models (a GPU; tiny models run on a CPU). "
    "flux2-klein, qwen-edit: FLUX.2 [klein] 4B or Qwen-Image-Edit-Plus painting from all the customer's "
    "photos, and Real-ESRGAN in torch, from --models (likewise). "
    "replicate, runpod: serverless GPUs, with their PHOTOGEN_REPLICATE_* / PHOTOGEN_RUNPOD_* settings; "
    "runpod-qwen-edit: RunPod's hosted Qwen-Image-Edit-2511 (PHOTOGEN_RUNPOD_API_KEY).",
)
@click.option(
    "--models",
    "models_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The diffusers, flux2-klein or qwen-edit engine's models folder ($PHOTOGEN_MODELS_DIR); "
    "`photogen dev make-tiny-models [--family F]` writes a tiny one.",
)
@click.option(
    "--kind",
    "kind_id",
    default=None,
    help="Run one studio job of this kind instead (`photogen kinds`): pose_pack, fashion_shoot, try_on, "
    "living_portrait [default: portrait_print, the order].",
)
@click.option(
    "--garment",
    type=click.Path(dir_okay=False),
    default=None,
    help="The product's or garment's photo, for fashion_shoot and try_on (default: scikit-image's coffee cup).",
)
@click.option("--poses", default=None, help="The job's poses, comma-separated, e.g. front,back (default: the kind's own).")
@click.option(
    "--video-models",
    "video_models_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="living_portrait's wan-i2v models folder ($PHOTOGEN_VIDEO_MODELS_DIR); "
    "`photogen dev make-tiny-models --family wan-i2v DIR` writes a tiny one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout; progress stays on stderr.")
@clear_errors
def demo(
    selfie, style_id, product_id, variants, out, home, engine, models_dir, kind_id, garment, poses, video_models_dir, as_json
) -> None:
    """Run one order: register it, generate and validate proofs, auto-approve the best,
    render the print file, and copy everything to OUT/<order id>/ (the output says where).

    With --kind, one studio job instead: its shots run one by one, then its ZIP, copied to
    OUT/<job id>/."""
    started = time.perf_counter()
    load_styles().get(style_id)  # unknown ids fail before anything is loaded
    load_products().get(product_id)
    engine_settings = _engine_settings(engine, models_dir)
    job_demo = _job_demo(kind_id, engine_settings["engine"], garment, poses, video_models_dir)
    if job_demo is not None:
        kind, video_models_dir = job_demo
        if video_models_dir:
            engine_settings["video_models_dir"] = video_models_dir
    # the settings build_defs will run on: a paying shop refuses a non-commercial model
    # (PHOTOGEN_COMMERCIAL_ONLY) before the home is made or a model loaded
    require_commercial_configuration(PhotoGenSettings(**({"home": home} if home else {}), **engine_settings))
    if out:  # a folder the user chose is checked before the home is made
        out_dir = output_folder(out, "--out").resolve()
        paths = local_home(home)
    else:
        paths = local_home(home)
        out_dir = output_folder(str(default_out(home, paths)), "--out").resolve()
    dagster_home = use_local_instance(paths)
    upload = read_image_file(selfie) if selfie else default_selfie()

    import dagster as dg

    from photogen_pipelines.definitions import build_defs, register_local_order

    defs = build_defs(str(paths.home), **engine_settings)
    resources = defs.resources
    book, store = resources["orders"].book(), resources["storage"].store()
    if job_demo is not None:
        from photogen_pipelines.cli import demo_jobs

        inputs = demo_jobs.JobDemo(
            kind=kind,
            selfie=upload,
            garment=(read_image_file(garment) if garment else demo_jobs.default_garment()) if _takes_product(kind) else None,
            poses=_pose_list(poses),
            style_id=style_id,
            product_id=product_id,
            variants=variants,
        )
        progress(f"{engine_settings['engine']} engine: loading models and checking the photos")
        video_engine = "wan-i2v" if video_models_dir else None
        job = demo_jobs.run_job_demo(defs, inputs, engine_settings["engine"], video_engine, progress)
        summary = demo_jobs.job_summary(job, kind, store, out_dir, dagster_home, time.perf_counter() - started)
        summary["home"] = str(paths.home)
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        else:
            demo_jobs.print_job_summary(summary)
        return
    progress(f"{engine_settings.get('engine', 'embedded')} engine: loading models and checking the selfie")
    order = register_local_order(defs, upload, style_id, product_id, variants, approval="auto")
    progress(f"order {order.id}: {style_id} on {product_id}, {variants} proofs ({order.reason})")

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("orders", [order.id])
        order = run_order_job(defs, instance, book, "proof_job", order.id)
        if order.state == OrderState.APPROVED:  # approval="auto": the proof run picked the best proof
            progress(f"auto-approved proof {order.approved_proof}")
            order = run_order_job(defs, instance, book, "print_job", order.id)

    summary = _summary(order, store, out_dir, dagster_home, time.perf_counter() - started)
    summary["home"] = str(paths.home)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


def default_out(home: str | None, paths: LocalPaths) -> Path:
    """Where the demo copies its files without --out: into the home a user named (--home or
    PHOTOGEN_HOME), so that a demo run elsewhere leaves nothing in the current folder; with
    the default home, ./photogen-demo beside it, where a newcomer looks."""
    if home or os.environ.get("PHOTOGEN_HOME"):
        return paths.home / "photogen-demo"
    return Path("photogen-demo")


def _engine_settings(engine: str | None, models_dir: str | None) -> dict:
    """The engine the demo runs: the options, else PHOTOGEN_ENGINE / PHOTOGEN_MODELS_DIR."""
    from pydantic import ValidationError

    from photogen_pipelines.settings import PhotoGenSettings

    try:
        settings = PhotoGenSettings()
    except ValidationError as exc:  # e.g. PHOTOGEN_ENGINE=gpu
        problem = exc.errors()[0]
        where = "PHOTOGEN_" + str(problem["loc"][0]).upper()
        raise BadInput(f"{where}: {problem['msg']}", code="bad_setting") from None
    engine = engine or settings.engine
    models_dir = models_dir or settings.models_dir
    if engine == "embedded":
        if models_dir:
            raise BadInput("--models is for --engine diffusers", code="models_without_engine")
        return {"engine": "embedded"}
    if engine in ("replicate", "runpod", "runpod-qwen-edit"):
        if models_dir:
            raise BadInput(f"--models is for --engine diffusers; {engine} runs its own models", code="models_without_engine")
        needed = {
            "replicate": ["replicate_api_token"],
            "runpod": ["runpod_api_key", "runpod_endpoint_id"],
            "runpod-qwen-edit": ["runpod_api_key"],
        }[engine]
        missing = ["PHOTOGEN_" + name.upper() for name in needed if not getattr(settings, name)]
        if missing:
            raise BadInput(f"--engine {engine} needs {' and '.join(missing)} in the environment", code="setting_missing")
        return {"engine": engine}  # the provider's key and endpoint come from the environment
    if not models_dir:
        raise BadInput(
            f"--engine {engine} needs --models DIR (`photogen dev make-tiny-models{_FAMILY_OPTION.get(engine, '')} DIR` "
            "writes a tiny one)",
            code="models_dir_missing",
        )
    try:
        from photogen_pipelines.engines.models_folder import missing_model_files
    except ImportError as exc:
        raise BadInput(
            f"the diffusers engine is not installed ({exc.name}): pip install -e '.[gpu]'", code="gpu_extra_missing"
        ) from None
    missing = missing_model_files(models_dir, engine)
    if missing:
        raise BadInput(
            f"the models folder {models_dir} (--engine {engine}) lacks: " + "; ".join(missing), code="models_incomplete"
        )
    return {"engine": engine, "models_dir": models_dir}


# the tiny models of a reference-image engine: `photogen dev make-tiny-models --family ...`
_FAMILY_OPTION = {"flux2-klein": " --family flux2-klein", "qwen-edit": " --family qwen-edit"}


def _job_demo(kind_id: str | None, engine: str, garment: str | None, poses: str | None, video_models_dir: str | None):
    """The studio job's kind and video models folder for --kind (None: the order demo), every
    option checked against the kind and the kind against the engines before any work."""
    from photogen_pipelines.catalog.kinds import load_kinds
    from photogen_pipelines.cli import demo_jobs
    from photogen_pipelines.workflows.jobs import kind_of

    settings = PhotoGenSettings()
    if kind_id in (None, "portrait_print"):
        for option, value in (("--garment", garment), ("--poses", poses), ("--video-models", video_models_dir)):
            if value:
                raise BadInput(f"{option} is for --kind; the order demo takes none", code="option_not_used")
        return None
    kinds = load_kinds(settings.kinds_path)
    kind = kind_of(kinds, kind_id)
    if "mp4" in kind.outputs:
        video_models_dir = video_models_dir or settings.video_models_dir
    elif video_models_dir:
        raise BadInput(f"--video-models is for a living_portrait, not a {kind.id}", code="option_not_used")
    pose_list = _pose_list(poses)
    demo_jobs.check_options(kind, engine, video_models_dir, garment, pose_list)
    if pose_list:
        kinds.check_poses(list(pose_list))
    return kind, video_models_dir


def _pose_list(poses: str | None) -> tuple[str, ...] | None:
    names = tuple(p.strip() for p in (poses or "").split(",") if p.strip())
    return names or None


def _takes_product(kind) -> bool:
    return any(i.type in ("product_photo", "garment_photo") for i in kind.inputs)


def _summary(order, store, out: Path, dagster_home: Path, seconds: float) -> dict:
    keys = OrderKeys(order.id)
    folder = out / order.id

    def export(key: str) -> str:
        target = folder / Path(key).relative_to(keys.prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.path(key), target)
        return str(target)

    summary = {
        "order_id": order.id,
        "outcome": order.state.value,
        "reason": order.reason,
        "style_id": order.style_id,
        "product_id": order.product_id,
        "proofs": [],
        "chosen_proof": order.approved_proof,
        "print_file": None,
        "manifest": None,
        "pixel_size": None,
        "dpi": None,
        "effective_dpi": None,
        "seconds_per_stage": order.stage_seconds,
        "seconds_total": round(seconds, 2),
        "dagster_home": str(dagster_home),
        "out": str(folder),  # where the files below were copied (nothing, for an order with none)
    }
    validation = keys.load_if_present(store, Validation)
    if validation is not None:
        final = validation.final_scores()
        candidates = keys.load_if_present(store, CandidatesInfo)
        take_of = {c.variant: c.take for c in candidates.candidates} if candidates else {}
        summary["identity_threshold"] = validation.threshold
        summary["proofs"] = [
            {
                "variant": v,
                "take": takes.label_of(take_of.get(v)),
                "path": export(keys.proof(v)),
                "identity_score": final[v].similarity,
                "strength": final[v].strength,
                "round": final[v].round,
            }
            for v in sorted(validation.proofs)
        ]
        summary["rejected_variants"] = [
            {"variant": v, "identity_score": s.similarity, "reason": s.reason} for v, s in sorted(final.items()) if not s.passed
        ]
    if order.state == OrderState.READY:
        manifest = keys.load(store, Manifest)
        summary.update(
            print_file=export(manifest.file),
            manifest=export(keys.manifest),
            pixel_size=list(manifest.pixel_size),
            dpi=manifest.dpi,
            effective_dpi=manifest.effective_dpi,
        )
    return summary


def _print_summary(summary: dict) -> None:
    folder = Path(summary["out"])

    def shown(path: str) -> str:  # a copied file, by its place in the order's folder
        return str(Path(path).relative_to(folder))

    click.echo(
        f"\nOrder {summary['order_id']}: {summary['outcome']}"
        + (f" ({summary['reason']})" if summary["outcome"] != "ready" else "")
    )
    if summary["proofs"] or summary["print_file"]:
        click.echo(f"  files copied to {folder}{os.sep}")
    else:
        click.echo("  no files to copy")
    for proof in summary["proofs"]:
        chosen = "  <- approved" if proof["variant"] == summary["chosen_proof"] else ""
        score = f"identity {proof['identity_score']:.2f} (gate ≥ {summary['identity_threshold']:.2f})"
        take = f" ({proof['take']})" if proof.get("take") else ""
        click.echo(f"  proof {proof['variant']}{take}: {score}  {shown(proof['path'])}{chosen}")
    for variant in summary.get("rejected_variants", []):
        click.echo(f"  variant {variant['variant']} dropped: {variant['reason']}")
    if summary["print_file"]:
        width, height = summary["pixel_size"]
        dpi = f"tagged {summary['dpi']} DPI, " if summary.get("dpi") else ""
        click.echo(
            f"  print file: {shown(summary['print_file'])}  ({width}x{height} px, {dpi}{summary['effective_dpi']} effective DPI)"
        )
        click.echo(f"  manifest:   {shown(summary['manifest'])}")
        # every proof and the print file carry signed C2PA Content Credentials (imaging/content_credentials.py)
        click.echo(f"  signed:     Content Credentials (C2PA); check: {photogen_command()} credentials verify FILE")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary["seconds_per_stage"].items())
    click.echo(f"  time: {summary['seconds_total']:.1f} s in all, with start-up and model loading; stages: {stages}")
    ui = f"{photogen_command()} ui --home {shlex.quote(summary['home'])}" if summary.get("home") else "photogen ui"
    click.echo(f"  see the runs: {ui}  (Dagster instance {summary['dagster_home']})")
