"""What the storefront hears: webhook endpoints, the events of the outbox and their signed delivery."""
