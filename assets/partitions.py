import dagster as dg

# One partition key per order id. Sensors and the CLI add keys when orders are paid.
orders_partitions = dg.DynamicPartitionsDefinition(name="orders")
