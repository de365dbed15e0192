"""Text rendering of `Stats` for `aijobs stats` (the dashboard renders the same object)."""

from __future__ import annotations

from aijobs.monitoring.stats import Stats


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.1f}ms"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.2f}s"
    return f"{value / 60:.1f}m"


def short_id(value: object) -> str:
    """A job id in a form rows can be told apart by: ids are time-ordered (UUIDv7), so jobs
    created together share their first characters; the last ones are random."""
    text = str(value)
    return text if len(text) <= 13 else f"{text[:4]}…{text[-8:]}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def render(stats: Stats) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"aijobs stats at {stats.taken_at:%Y-%m-%d %H:%M:%S} UTC")
    add("")
    for pause in stats.provider_pauses:
        # First, since nothing runs on that provider until someone fixes its configuration.
        add(
            f"PROVIDER PAUSED: {pause.provider} for {seconds(pause.paused_seconds)} "
            f"(jobs wait, no attempt spent): {pause.paused_reason}"
        )
    if stats.provider_pauses:
        add("")
    add(
        f"queue: {stats.pending} pending, {stats.processing} processing, "
        f"longest runnable wait {seconds(stats.oldest_pending_seconds)}"
    )
    for row in stats.queue_depth:
        add(f"  {row['type']:<22}{row['status']:<12}{row['count']:>8}")
    if stats.top_tenants:
        add(f"  {'top tenants':<38}{'pending':>9}{'running':>9}{'limit':>7}{'weight':>7}")
        for t in stats.top_tenants:
            limit = "-" if t["max_running"] is None else str(t["max_running"])
            add(f"  {t['tenant']!s:<38}{t['pending']:>9}{t['processing']:>9}{limit:>7}{t['weight']:>7}")
    add("")
    add(
        f"{'window':<8}{'done/min':>9}{'fail/min':>9}{'done':>7}{'failed':>7}{'error':>8}{'retries':>8}"
        f"{'rescued':>8}{'p50':>9}{'p95':>9}{'avg':>9}{'wait':>9}"
    )
    for w in stats.windows:
        add(
            f"{str(w.minutes) + 'm':<8}{w.completed_per_minute:>9.2f}{w.failed_per_minute:>9.2f}"
            f"{w.completed:>7}{w.failed:>7}{percent(w.error_rate):>8}{w.retries:>8}{w.lost:>8}"
            f"{seconds(w.p50):>9}{seconds(w.p95):>9}{seconds(w.avg):>9}{seconds(w.avg_wait):>9}"
        )
    if stats.providers:
        add("")
        add(
            f"{'window':<8}{'provider/model':<32}{'calls':>7}{'p50':>9}{'p95':>9}"
            f"{'tokens in/out':>18}{'cost $':>11}"
        )
        for p in stats.providers:
            name = f"{p.provider}/{p.model}" if p.model else p.provider
            add(
                f"{str(p.minutes) + 'm':<8}{name[:31]:<32}{p.calls:>7}"
                f"{seconds(p.p50_ms / 1000 if p.p50_ms is not None else None):>9}"
                f"{seconds(p.p95_ms / 1000 if p.p95_ms is not None else None):>9}"
                f"{f'{p.input_tokens}/{p.output_tokens}':>18}{p.cost_usd:>11.4f}"
            )
    add("")
    live = stats.live_workers()
    add(f"workers: {len(live)} alive, {len(stats.workers) - len(live)} dead or stopped (last hour)")
    for worker in stats.workers:
        add(
            f"  {worker['id']:<36}{worker['state']:<9}{worker['holding']:>3}/{worker['concurrency']:<4} "
            f"in flight, heartbeat {seconds(worker['heartbeat_age_seconds'])} ago"
        )
        for job in worker["jobs"][:5]:
            add(f"      {job['id']}  {job['type']}  attempt {job['attempt']}")
    if stats.status_summary:
        add("")
        # The seed's avg_processing_time is created_at to the last update: queue wait, backoff
        # and rate-limit holds included, so it is labelled for what it measures.
        add("all time (the seed's query):")
        add(f"  {'status':<12}{'count':>10}{'avg created→updated (s)':>26}")
        for summary in stats.status_summary:
            avg = summary["avg_processing_time"]
            shown = f"{avg:.3f}" if avg is not None else "-"
            add(f"  {summary['status']:<12}{summary['count']:>10}{shown:>26}")
    return "\n".join(lines)
