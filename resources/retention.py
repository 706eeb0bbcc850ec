import dagster as dg
from pydantic import Field

from photogen_pipelines.workflows.retention import RetentionPolicy


class RetentionSettings(dg.ConfigurableResource):
    """How long an order's files are kept after it is over, and whether the print file outlives them."""

    days: int = Field(30, ge=1, description="days after an order's last state change before its files are deleted")
    keep_print_files: bool = Field(True, description="keep print/print_file.* and print/manifest.json (a reprint needs them)")

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(days=self.days, keep_print_files=self.keep_print_files)
