"""Tenants, API keys and what a key may do."""
