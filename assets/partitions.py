import dagster as dg

# One partition key per paid order: `paid_orders` (sensors/orders.py) adds it with the order's
# proof run. The proof assets are partitioned by it.
orders_partitions = dg.DynamicPartitionsDefinition(name="orders")

# One partition key per order approved for print: `approved_orders` adds it with the print
# run (and the proof run itself when it auto-approves, assets/proofs.py). The print assets are
# partitioned by it, so an order that is cancelled, rejected or still waiting for the
# customer's choice is no missing `printing` partition in the UI.
approved_orders_partitions = dg.DynamicPartitionsDefinition(name="approved_orders")
