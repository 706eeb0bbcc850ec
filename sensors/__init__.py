"""Sensors: orders in the database become runs, Stripe is reconciled, failed runs settle their orders."""

from sensors.failures import order_run_failures
from sensors.orders import approved_orders, paid_orders
from sensors.payments import stripe_reconciliation

all_sensors = [paid_orders, approved_orders, stripe_reconciliation, order_run_failures]

__all__ = ["all_sensors", "approved_orders", "order_run_failures", "paid_orders", "stripe_reconciliation"]
