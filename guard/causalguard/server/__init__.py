"""The OpenAI-compatible guard server (``causalguard serve``)."""
