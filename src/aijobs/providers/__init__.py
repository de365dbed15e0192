"""LLM back ends behind one `Provider` protocol."""
