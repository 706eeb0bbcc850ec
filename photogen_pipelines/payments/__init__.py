"""Money in and back: Stripe PaymentIntents, webhook events, refunds and reconciliation."""
