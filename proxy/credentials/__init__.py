"""Credential sources (LWA, STS) and the cached-value type they share."""
