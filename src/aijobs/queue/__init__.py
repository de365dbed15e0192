"""Queue policy: enqueue with credits, retry backoff, and how an attempt's end is decided."""
