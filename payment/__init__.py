"""payment: charges and refunds (a simulated processor with real persistence)."""
