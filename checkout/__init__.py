"""checkout: PlaceOrder, the saga that coordinates catalog, payment and shipping."""
