"""The order: its states and their one mover (lifecycle), the orders database's book,
recipients, uploads, shipments and the outbox written with every change.
"""
