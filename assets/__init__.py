"""Asset and asset-check definitions for one order: selfie → proofs → print file."""

import dagster as dg

from assets.analytics import analytics_assets, analytics_job, generation_ledger, rejection_metrics
from assets.catalog_previews import catalog_assets, catalog_preview_job, style_previews
from assets.checks import identity_preserved, one_face_per_proof, print_spec_met, upscale_faithful
from assets.partitions import orders_partitions
from assets.printing import delivery, print_file, print_master
from assets.proofs import selfie, styled_candidates, validated_proofs
from assets.run_tags import GPU_JOB_TAGS

proof_assets = [selfie, styled_candidates, validated_proofs]
print_assets = [print_master, print_file, delivery]
order_checks = [identity_preserved, one_face_per_proof, upscale_faithful, print_spec_met]

proof_job = dg.define_asset_job(
    "proof_job",
    selection=dg.AssetSelection.assets(*proof_assets),
    description="Selfie to validated proofs for one order.",
    tags=GPU_JOB_TAGS,
)
print_job = dg.define_asset_job(
    "print_job",
    selection=dg.AssetSelection.assets(*print_assets),
    description="Approved proof to the print-ready file for one order.",
    tags=GPU_JOB_TAGS,
)

__all__ = [
    "delivery",
    "analytics_assets",
    "analytics_job",
    "generation_ledger",
    "rejection_metrics",
    "catalog_assets",
    "catalog_preview_job",
    "style_previews",
    "identity_preserved",
    "one_face_per_proof",
    "order_checks",
    "upscale_faithful",
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
