import dagster as dg

from photogen_pipelines.payments.stripe_payments import StripeGateway


class StripePayments(dg.ConfigurableResource):
    """Stripe, for refunds and reconciliation; no API key means payments are off."""

    api_key: str | None = None
    webhook_secret: str | None = None
    api_base: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def gateway(self) -> StripeGateway | None:
        if not self.api_key:
            return None
        return StripeGateway(self.api_key, self.webhook_secret, self.api_base)
