"""The base layer: errors, settings, money, files, logs, processes, Kafka and MySQL clients.

Nothing here imports any other part of omshub (the layer contract in pyproject.toml checks it),
so every layer above can use it and a unit test can load it without the rest.
"""
