"""Adapters that run causalguard's levers on concrete model runtimes (HF transformers, LangChain)."""
