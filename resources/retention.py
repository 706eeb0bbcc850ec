import dagster as dg
from pydantic import Field

from photogen_pipelines.workflows.retention import RetentionPolicy


class RetentionSettings(dg.ConfigurableResource):
    """How long an order's files are kept after it is over, and whether the print file outlives them."""

    days: int = Field(30, ge=1, description="days after an order's last state change before its files are deleted")
    keep_print_files: bool = Field(True, description="keep print/print_file.* and print/manifest.json (a reprint needs them)")
    unordered_upload_days: int = Field(7, ge=1, description="days before a photo no order uses is deleted")
    abandoned_checkout_days: int = Field(
        14, ge=1, description="days before an order still awaiting payment is cancelled and its recipient deleted"
    )

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            days=self.days,
            keep_print_files=self.keep_print_files,
            unordered_upload_days=self.unordered_upload_days,
            abandoned_checkout_days=self.abandoned_checkout_days,
        )
