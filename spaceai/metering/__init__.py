"""Metering: what a request cost, and the ledger that records every request."""
