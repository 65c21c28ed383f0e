"""The local stack: MariaDB, Kafka, Kafka Connect and omshub's processes, started and watched."""
