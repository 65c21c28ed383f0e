"""One module per agent, timer and background task of the worker app (``processors.app`` wires
them from its topology table).

Each is a plain coroutine function that takes the process's :class:`~processors.runtime.Runtime`
first (and the agent's stream, for agents), so it runs unchanged under Faust and under a test's
fake stream. The rule they all keep: no per-message exception escapes. A failure becomes a row
state (retried by the sweeper), a DLQ record, or a counted, logged error; an agent that raised
would stop consuming its partitions for the life of the process.
"""
