"""Links from Dagster's UI to what the storefront API serves operators (the rejection chart)."""

from __future__ import annotations

from datetime import date

import dagster as dg
from pydantic import Field

from photogen_pipelines.access.signing import Signer
from photogen_pipelines.settings import LocalPaths


class OperatorLinks(dg.ConfigurableResource):
    """Where an operator's browser reaches the storefront API (`public_base_url`,
    PHOTOGEN_PUBLIC_BASE_URL), and the secret the API checks its links with
    (PHOTOGEN_SECRET_KEY, an environment variable, never config shown in the UI; default: the
    one in the home folder, as the API's). Without a base URL there is no link to give."""

    public_base_url: str | None = Field(None, description="where operators reach the storefront API (https://…)")
    secret_key: str | None = None
    home: str | None = None

    def rejection_chart_url(self, day: date | str) -> str | None:
        """The day's rejection chart, served by the API, signed for good; None without a base URL."""
        if not self.public_base_url:
            return None
        from photogen_pipelines.analytics.metrics import chart_url  # pandas: only the analytics runs need it

        signer = Signer(self.secret_key or LocalPaths.resolve(self.home).secret_key())
        return chart_url(self.public_base_url, signer, day)
