"""analytics: a read model of every order shard (best sellers, sales over time, cross-shard search)."""
