"""Monitoring: shared stats, Prometheus metrics, and the leader-elected maintenance loop."""
