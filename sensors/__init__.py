"""Sensors and schedules: orders in the database become runs, Stripe is reconciled, failed
runs settle their orders, credit-paid orders get their credits back, runs whose worker died
are failed, catalog previews stay current, old orders' files are retired, ready orders go
to the print provider and are followed there, unapproved proofs meet their deadline, the
storefronts' webhooks are delivered, the analysts' tables are rebuilt nightly, and studio jobs
become one run per shot and one per export."""

from sensors.analytics import nightly_analytics
from sensors.approvals import approval_deadlines
from sensors.catalog import catalog_version_changed, weekly_catalog_previews
from sensors.credits import credit_settlements
from sensors.dead_runs import dead_run_workers
from sensors.failures import order_run_failures
from sensors.fulfilment import print_provider_orders
from sensors.jobs import job_credit_settlements, job_run_failures, paid_jobs, settled_jobs
from sensors.merchant_catalogs import merchant_catalog_changes, weekly_catalog_shoots
from sensors.orders import approved_orders, paid_orders
from sensors.payments import stripe_reconciliation
from sensors.retention import order_retention
from sensors.webhooks import webhook_deliveries

all_sensors = [
    paid_orders,
    approved_orders,
    stripe_reconciliation,
    credit_settlements,
    order_run_failures,
    dead_run_workers,
    catalog_version_changed,
    order_retention,
    print_provider_orders,
    approval_deadlines,
    webhook_deliveries,
    paid_jobs,
    settled_jobs,
    job_run_failures,
    job_credit_settlements,
    merchant_catalog_changes,
]
all_schedules = [weekly_catalog_previews, nightly_analytics, weekly_catalog_shoots]

__all__ = [
    "approval_deadlines",
    "print_provider_orders",
    "all_schedules",
    "all_sensors",
    "approved_orders",
    "catalog_version_changed",
    "credit_settlements",
    "dead_run_workers",
    "nightly_analytics",
    "order_retention",
    "order_run_failures",
    "paid_orders",
    "stripe_reconciliation",
    "webhook_deliveries",
    "paid_jobs",
    "settled_jobs",
    "job_run_failures",
    "job_credit_settlements",
    "merchant_catalog_changes",
    "weekly_catalog_shoots",
    "weekly_catalog_previews",
]
