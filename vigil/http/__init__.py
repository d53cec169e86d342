"""The ops HTTP surface (docs/HTTP.md)."""
