"""catalog: products, the stock engine and its write-behind flusher."""
