"""Sending: the dispatcher (one lane per provider, admission, retries, failover, settling),
provider sessions and preflight."""
