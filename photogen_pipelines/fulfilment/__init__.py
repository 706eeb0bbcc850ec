"""The print leaves us: submitting an approved order to the shop's print provider and following it to the door."""
