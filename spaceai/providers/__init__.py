"""Providers: one module per kind of upstream, all behind the interface in ``base``."""
