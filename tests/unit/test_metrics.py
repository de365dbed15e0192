"""The Prometheus metrics as a scrape sees them, without a database."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aijobs.jobs import registry
from aijobs.monitoring.metrics import Metrics, snapshot_from_rows


def queue_depth(m: Metrics) -> dict[tuple[str, str], float]:
    text = generate_latest(m.registry).decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "aijobs_queue_depth")
    return {(s.labels["type"], s.labels["status"]): s.value for s in family.samples}


def test_queue_depth_keeps_a_zero_series_for_every_type_and_live_status() -> None:
    """A drained queue reads 0, not 'no data': series must not vanish with the last job."""
    m = Metrics()
    m.queue.update(snapshot_from_rows([{"type": "sentiment_analysis", "status": "pending", "count": 3}], 5.0))
    busy = queue_depth(m)
    m.queue.update(snapshot_from_rows([], None))
    drained = queue_depth(m)

    every = {(t, s) for t in registry() for s in ("pending", "processing")}
    assert set(busy) == set(drained) == every
    assert busy[("sentiment_analysis", "pending")] == 3
    assert sum(busy.values()) == 3
    assert set(drained.values()) == {0}


def test_queue_depth_still_shows_rows_of_a_type_no_longer_registered() -> None:
    m = Metrics()
    m.queue.update(snapshot_from_rows([{"type": "retired_type", "status": "processing", "count": 2}], None))
    depth = queue_depth(m)
    assert depth[("retired_type", "processing")] == 2
    assert depth[("retired_type", "pending")] == 0
