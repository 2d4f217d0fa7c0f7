"""Delivery reports: one status vocabulary, polling providers that are asked, and the webhook
receiver for those that tell."""
