"""spapi-proxy: a local signing reverse proxy for Amazon's Selling Partner API."""

__version__ = "0.1.0"
