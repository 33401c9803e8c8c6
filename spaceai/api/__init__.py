"""The HTTP surface: a small ASGI application, one module per group of endpoints."""
