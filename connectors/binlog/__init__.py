"""The embedded binlog connector: MariaDB/MySQL row events as Debezium-format records on Kafka."""
