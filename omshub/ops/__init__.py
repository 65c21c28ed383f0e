"""Operations on a running hub: schema migrations, push and topic replay, the dead-letter queue."""
