"""The shared kernel: rules of the types every context exchanges (ids, money,
addresses, order lines, cards) and the order-id format that carries a shard.
Contexts import it; it imports no context, only the runtime kit (``mesh``)."""
