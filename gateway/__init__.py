"""The Open311 GeoReport v2 gateway (gateway/app.py)."""
