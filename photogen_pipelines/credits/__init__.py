"""Customers as the shop knows them, and their credit wallets: a ledger whose entries each
balance against one of the shop's accounts, and whose sum is the customer's balance."""
