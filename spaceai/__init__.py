"""SpaceAI: one OpenAI-compatible API in front of many models, metered to the token."""

__version__ = "0.1.0"
