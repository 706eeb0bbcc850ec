"""The floor above the domains: placing an order (intake), approving it, and retiring it
(retention), each tying orders to payments, fulfilment and storage.
"""
