"""shipping: quotes and shipments."""
