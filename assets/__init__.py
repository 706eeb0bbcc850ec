"""Asset and asset-check definitions for one order: selfie → proofs → print file."""

from collections.abc import Mapping

import dagster as dg

from assets.analytics import analytics_assets, analytics_job, generation_ledger, rejection_metrics
from assets.catalog_previews import catalog_assets, catalog_preview_job, define_catalog_preview_job, style_previews
from assets.checks import (
    identity_preserved,
    one_face_per_proof,
    print_detail_clean,
    print_spec_met,
    proofs_are_safe,
    upscale_faithful,
)
from assets.fulfilment import fulfilment, provider_accepted
from assets.jobs import job_export, job_export_job, job_shots, jobs_assets, shot_job
from assets.partitions import approved_orders_partitions, orders_partitions
from assets.printing import delivery, print_file, print_master
from assets.proofs import selfie, styled_candidates, validated_proofs

proof_assets = [selfie, styled_candidates, validated_proofs]
print_assets = [print_master, print_file, delivery, fulfilment]
order_checks = [
    identity_preserved,
    one_face_per_proof,
    proofs_are_safe,
    upscale_faithful,
    print_detail_clean,
    print_spec_met,
    provider_accepted,
]


def _order_job(name: str, order_assets: list, description: str, tags: Mapping[str, str] | None):
    return dg.define_asset_job(name, selection=dg.AssetSelection.assets(*order_assets), description=description, tags=tags)


def define_proof_job(tags: Mapping[str, str] | None = None):
    return _order_job("proof_job", proof_assets, "Selfie to validated proofs for one order.", tags)


def define_print_job(tags: Mapping[str, str] | None = None):
    description = "Approved proof to the print-ready file for one order, and on to the print provider."
    return _order_job("print_job", print_assets, description, tags)


def define_jobs(gpu_tags: Mapping[str, str]) -> list:
    """The code location's jobs. Those whose steps load the style or upscale engine carry
    `gpu_tags` (assets/run_tags.py), which build_defs reads from the same settings as the
    engines, so overrides of the engine move the tags with it."""
    return [
        define_proof_job(gpu_tags),
        define_print_job(gpu_tags),
        define_catalog_preview_job(gpu_tags),
        analytics_job,
        shot_job,
        job_export_job,
    ]


# Untagged: the jobs' names and selections, for sensors (which target jobs by name, so the
# code location's tagged jobs are the ones that run) and tests.
proof_job = define_proof_job()
print_job = define_print_job()

__all__ = [
    "job_export",
    "job_export_job",
    "job_shots",
    "jobs_assets",
    "shot_job",
    "approved_orders_partitions",
    "delivery",
    "fulfilment",
    "provider_accepted",
    "analytics_assets",
    "analytics_job",
    "generation_ledger",
    "rejection_metrics",
    "catalog_assets",
    "catalog_preview_job",
    "define_catalog_preview_job",
    "define_jobs",
    "define_print_job",
    "define_proof_job",
    "style_previews",
    "identity_preserved",
    "one_face_per_proof",
    "order_checks",
    "proofs_are_safe",
    "upscale_faithful",
    "print_detail_clean",
    "orders_partitions",
    "print_assets",
    "print_file",
    "print_job",
    "print_master",
    "print_spec_met",
    "proof_assets",
    "proof_job",
    "selfie",
    "styled_candidates",
    "validated_proofs",
]
