"""The only place that runs SQL: migrations, named queries, the store, the embedded server."""
