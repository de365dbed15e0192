"""Webhooks: an outbox row written with each job's end, delivered signed and at least once to
a real receiver on loopback, retried, logged and replayable through the API; bad URLs refused
at registration with the reason, bad receivers bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from aijobs.config import Settings
from aijobs.db.repos.webhooks import ClaimedDelivery
from aijobs.db.store import Store
from aijobs.queue.enqueue import enqueue
from aijobs.worker import webhook_targets
from aijobs.worker.webhooks import MAX_ERROR_CHARS, Deliverer
from tests.integration.api.conftest import StartApi
from tests.support.api_server import SERVICE_KEY
from tests.support.webhook_receiver import HUGE_BYTES, WebhookReceiver
from tests.support.workers import fetch_all, fetch_one, running_worker, wait_until

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" + "AAAAAA=="


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Receivers live on loopback here, and retries come quickly."""
    return settings.model_copy(
        update={
            "webhook_allow_private": True,
            "webhook_retry_base_seconds": 0.05,
            "webhook_timeout_seconds": 5.0,
        }
    )


@pytest.fixture
async def user(store: Store) -> uuid.UUID:
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 1000, "test credits")
    return user


async def add_endpoint(
    db_url: str, url: str, *, user_id: uuid.UUID | None, events: list[str] | None = None
) -> uuid.UUID:
    row = await fetch_one(
        db_url,
        "insert into aijobs.webhook_endpoints (user_id, url, secret, events) values (%s, %s, %s, %s)"
        " returning id",
        user_id,
        url,
        SECRET,
        events or ["job.completed", "job.failed", "job.cancelled"],
    )
    return uuid.UUID(str(row["id"]))


async def create_job(store: Store, user: uuid.UUID, text: str = "Lovely staff, great pasta.") -> uuid.UUID:
    async with store.session() as session:
        created = await enqueue(session, user_id=user, job_type="sentiment_analysis", payload={"text": text})
    return created.id


async def deliveries(db_url: str) -> list[dict[str, Any]]:
    return await fetch_all(
        db_url,
        "select d.*, (select array_agg(a.status_code order by a.attempt)"
        " from aijobs.webhook_delivery_attempts a where a.delivery_id = d.id) as codes"
        " from aijobs.webhook_deliveries d order by d.id",
    )


# -- the outbox ------------------------------------------------------------------------------
async def test_each_job_end_leaves_one_row_per_matching_endpoint_in_its_own_transaction(
    store: Store, db_url: str, user: uuid.UUID
) -> None:
    other = uuid.uuid4()
    mine = await add_endpoint(db_url, "https://hooks.example.test/a", user_id=user)
    theirs = await add_endpoint(db_url, "https://hooks.example.test/b", user_id=other)
    deployment_failures = await add_endpoint(
        db_url, "https://hooks.example.test/ops", user_id=None, events=["job.failed"]
    )
    cancelled, failed, rolled_back = [await create_job(store, user) for _ in range(3)]

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("select aijobs.cancel_job(%s)", (cancelled,))
        await conn.execute(
            "update aijobs.jobs set status = 'failed', finished_at = now(), error = 'x' where id = %s",
            (failed,),
        )
        # A second write of the same end adds nothing.
        await conn.execute("update aijobs.jobs set status = 'failed' where id = %s", (failed,))
        async with conn.transaction(force_rollback=True):
            await conn.execute("select aijobs.cancel_job(%s)", (rolled_back,))

    rows = await deliveries(db_url)
    seen = sorted((r["job_id"], r["endpoint_id"], r["event"]) for r in rows)
    assert seen == sorted(
        [
            (cancelled, mine, "job.cancelled"),
            (failed, mine, "job.failed"),
            (failed, deployment_failures, "job.failed"),
        ]
    )
    assert theirs not in {r["endpoint_id"] for r in rows}
    body = next(r["payload"] for r in rows if r["job_id"] == failed and r["endpoint_id"] == mine)
    assert body["type"] == "job.failed"
    assert body["data"]["id"] == str(failed)
    assert body["data"]["status"] == "failed"
    assert body["data"]["error"] == "x"
    assert "payload" not in body["data"], "the job's input never leaves in a webhook"
    assert {r["status"] for r in rows} == {"pending"}


# -- delivery --------------------------------------------------------------------------------
async def test_a_receiver_that_fails_twice_gets_one_effective_signed_delivery(
    hook_settings: Settings, store: Store, db_url: str, user: uuid.UUID, start_api: StartApi
) -> None:
    api = start_api(webhook_allow_private=True)
    async with (
        WebhookReceiver(script=[500, 500, 204]) as receiver,
        httpx.AsyncClient(base_url=api.url, timeout=30) as client,
    ):
        created = await client.post(
            "/api/me/webhooks",
            json={"url": receiver.url, "events": ["job.completed"]},
            headers=api.auth(user),
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["scope"] == "account"
        assert endpoint["secret"].startswith("whsec_")
        listed = (await client.get("/api/me/webhooks", headers=api.auth(user))).json()
        assert [e["id"] for e in listed] == [endpoint["id"]]
        assert "secret" not in listed[0], "the secret is shown once, at creation"

        job_id = await create_job(store, user)
        async with running_worker(hook_settings, store):

            async def delivered() -> bool:
                rows = await deliveries(db_url)
                return bool(rows) and rows[0]["status"] == "delivered"

            await wait_until(delivered, timeout=30, what="the delivery to succeed")

        assert [r.headers["webhook-id"] for r in receiver.requests] == [
            receiver.requests[0].headers["webhook-id"]
        ] * 3
        verifier = Webhook(endpoint["secret"])
        for request in receiver.requests:
            assert request.method == "POST"
            event = verifier.verify(request.body, request.headers)
            assert event["type"] == "job.completed"
        job = await fetch_one(db_url, "select result from aijobs.jobs where id = %s", job_id)
        assert event["data"]["id"] == str(job_id)
        assert event["data"]["result"] == job["result"]
        assert receiver.effective == [receiver.requests[0].headers["webhook-id"]], "one effective delivery"

        page = await client.get(f"/api/me/webhooks/{endpoint['id']}/deliveries", headers=api.auth(user))
        assert page.status_code == 200, page.text
        [item] = page.json()["items"]
        assert item["id"] == receiver.requests[0].headers["webhook-id"]
        assert item["status"] == "delivered"
        assert item["attempts"] == 3
        assert [a["status_code"] for a in item["log"]] == [500, 500, 204]
        assert item["log"][0]["error"] == "answered 500: receiver says no"

        # Replay: the same id and body again.
        replay = await client.post(
            f"/api/me/webhooks/{endpoint['id']}/deliveries/{item['id']}/replay", headers=api.auth(user)
        )
        assert replay.status_code == 202, replay.text
        async with running_worker(hook_settings, store):
            await wait_until(lambda: _count(receiver, 4), timeout=30, what="the replay")
        assert receiver.requests[3].headers["webhook-id"] == item["id"]
        assert receiver.requests[3].body == receiver.requests[2].body
        await wait_until(lambda: _delivered_with(db_url, 4), timeout=10, what="the replay recorded")

        # Another user sees none of it.
        stranger = uuid.uuid4()
        assert (await client.get("/api/me/webhooks", headers=api.auth(stranger))).json() == []
        for method, path in [
            ("GET", f"/api/me/webhooks/{endpoint['id']}/deliveries"),
            ("POST", f"/api/me/webhooks/{endpoint['id']}/deliveries/{item['id']}/replay"),
            ("DELETE", f"/api/me/webhooks/{endpoint['id']}"),
        ]:
            answer = await client.request(method, path, headers=api.auth(stranger))
            assert answer.status_code == 404, (method, path, answer.text)
        deleted = await client.delete(f"/api/me/webhooks/{endpoint['id']}", headers=api.auth(user))
        assert deleted.status_code == 204
        assert await deliveries(db_url) == []


async def _count(receiver: WebhookReceiver, n: int) -> bool:
    return len(receiver.requests) >= n


async def _delivered_with(db_url: str, attempts: int) -> bool:
    rows = await deliveries(db_url)
    return rows[0]["status"] == "delivered" and rows[0]["attempts"] == attempts


async def failed_for_good(db_url: str) -> None:
    """Wait for the (one) delivery to end failed."""

    async def failed() -> bool:
        rows = await deliveries(db_url)
        return bool(rows) and rows[0]["status"] == "failed"

    await wait_until(failed, timeout=30, what="the delivery to fail for good")


async def test_retries_stop_when_the_window_closes_and_the_delivery_fails(
    hook_settings: Settings, store: Store, db_url: str, user: uuid.UUID, start_api: StartApi
) -> None:
    tuned = hook_settings.model_copy(update={"webhook_retry_window_seconds": 0.3})
    async with WebhookReceiver(script=[503]) as receiver:
        await add_endpoint(db_url, receiver.url, user_id=None)
        await create_job(store, user)
        async with running_worker(tuned, store):
            await failed_for_good(db_url)
    [row] = await deliveries(db_url)
    assert row["attempts"] == len(receiver.requests) >= 1
    assert row["codes"] == [503] * row["attempts"]
    assert row["last_error"] == "answered 503: receiver says no"

    # The dashboard lists it and replays it.
    api = start_api()
    admin = {"apikey": SERVICE_KEY}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        page = await client.get("/dashboard/live", headers=admin)
        assert page.status_code == 200
        assert f'data-delivery="{row["id"]}"' in page.text
        assert "answered 503: receiver says no" in page.text
        path = f"/dashboard/webhooks/deliveries/{row['id']}/replay"
        assert (await client.post(path, headers=admin)).status_code == 403, "X-Dashboard is required"
        assert (await client.post(path, headers={**admin, "X-Dashboard": "1"})).status_code == 202
    [again] = await deliveries(db_url)
    assert again["status"] == "pending"


async def test_the_deployment_endpoints_are_for_admins(
    db_url: str, user: uuid.UUID, start_api: StartApi
) -> None:
    api = start_api(webhook_allow_private=True)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        refused = await client.post(
            "/api/admin/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=api.auth(user)
        )
        assert refused.status_code == 403
        service = {"Authorization": f"Bearer {SERVICE_KEY}"}
        created = await client.post(
            "/api/admin/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=service
        )
        assert created.status_code == 201, created.text
        assert created.json()["scope"] == "deployment"
        assert created.json()["events"] == ["job.completed", "job.failed", "job.cancelled"]
        listed = (await client.get("/api/admin/webhooks", headers=service)).json()
        assert [e["id"] for e in listed] == [created.json()["id"]]
        assert (await client.get("/api/me/webhooks", headers=api.auth(user))).json() == []
    row = await fetch_one(db_url, "select user_id from aijobs.webhook_endpoints")
    assert row["user_id"] is None


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "resolves to 127.0.0.1, a loopback address"),
        ("http://localhost/hook", "a loopback address"),
        ("https://10.1.2.3/hook", "resolves to 10.1.2.3, a private address"),
        ("https://192.168.0.10/hook", "a private address"),
        ("http://169.254.169.254/latest/meta-data", "resolves to 169.254.169.254, a link-local address"),
        ("http://[::1]/hook", "a loopback address"),
        ("http://[::ffff:10.0.0.1]/hook", "a private address"),
        ("http://0.0.0.0/hook", "the unspecified address"),
        ("http://100.64.0.1/hook", "not a public address"),
        ("ftp://93.184.215.14/hook", "must start with https:// or http://"),
        ("https://user:pw@93.184.215.14/hook", "may not carry a user name or password"),
        ("https:///hook", "has no host"),
        ("https://93.184.215.14:99999/hook", "is not a valid URL"),
        ("https://93.184.215.14/a b", "holds spaces or control characters"),
        ("https://bücher.example/hook", "must be ASCII"),
        ("https://a..example/hook", "has a host that is not a valid name (a..example)"),
        # urlsplit reads the public address; the HTTP client cannot send to it at all.
        ("https://[2606:4700:4700::1111]abc/hook", "is not a valid URL (Invalid port: 'abc')"),
    ],
)
async def test_a_bad_endpoint_url_is_refused_at_registration_with_the_reason(
    user: uuid.UUID, start_api: StartApi, url: str, reason: str
) -> None:
    api = start_api()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        answer = await client.post("/api/me/webhooks", json={"url": url}, headers=api.auth(user))
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        assert error["field"] == "body.url"
        assert reason in error["reason"]
        # A public address is accepted (registration never connects to it).
        good = await client.post(
            "/api/me/webhooks", json={"url": "https://93.184.215.14/hook"}, headers=api.auth(user)
        )
        assert good.status_code == 201, good.text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://[2606:4700:4700::1111]abc/hook", "is not a valid URL (Invalid port: 'abc')"),
        ("http://[v1.x]/", "is not a valid URL (Invalid IPv6 address: '[v1.x]')"),
        ("https://xn--zz.example/hook", "is not a valid URL (Invalid A-label)"),
        ("http://127.0.0.1:0/hook", "has port 0"),
    ],
)
async def test_a_url_the_deliverer_cannot_send_to_is_refused_even_where_any_address_is_allowed(
    user: uuid.UUID, start_api: StartApi, url: str, reason: str
) -> None:
    """WEBHOOK_ALLOW_PRIVATE lifts the address rule only: a URL the deliverer's HTTP client
    would refuse to send to is refused at registration, not stored to fail at every attempt."""
    api = start_api(webhook_allow_private=True)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        answer = await client.post("/api/me/webhooks", json={"url": url}, headers=api.auth(user))
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        assert error["field"] == "body.url"
        assert reason in error["reason"]
        assert (await client.get("/api/me/webhooks", headers=api.auth(user))).json() == []


async def test_a_lookup_that_fails_for_now_is_a_503_and_a_name_that_does_not_exist_a_422(
    user: uuid.UUID, start_api: StartApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver timing out or failing for now (EAI_AGAIN) says nothing of the URL: 503
    with Retry-After, nothing stored. A name it says does not exist is the client's: 422.
    DNS is off this machine, so the resolver's answers are faked by host."""
    real = webhook_targets.resolve
    answers: dict[str, BaseException] = {
        "timeout.example": TimeoutError(),
        "again.example": socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        "absent.example": socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        "nodata.example": socket.gaierror(socket.EAI_NODATA, "No address associated with hostname"),
    }

    async def resolve(host: str, port: int) -> list[str]:
        if host in answers:
            raise answers[host]
        return await real(host, port)

    monkeypatch.setattr(webhook_targets, "resolve", resolve)
    api = start_api()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        for host in ("timeout.example", "again.example"):
            for path, headers in (
                ("/api/me/webhooks", api.auth(user)),
                ("/api/admin/webhooks", {"apikey": SERVICE_KEY}),
            ):
                answer = await client.post(path, json={"url": f"https://{host}/hook"}, headers=headers)
                assert answer.status_code == 503, (host, answer.text)
                assert int(answer.headers["retry-after"]) > 0
                assert answer.json()["code"] == "dns_unavailable"
                assert host in answer.json()["detail"]
        for host in ("absent.example", "nodata.example"):
            answer = await client.post(
                "/api/me/webhooks", json={"url": f"https://{host}/hook"}, headers=api.auth(user)
            )
            assert answer.status_code == 422, (host, answer.text)
            assert answer.json()["errors"] == [
                {"field": "body.url", "reason": f"has a host that does not resolve ({host})"}
            ]
        assert (await client.get("/api/me/webhooks", headers=api.auth(user))).json() == []


async def test_endpoints_per_account_are_capped(user: uuid.UUID, start_api: StartApi) -> None:
    api = start_api(webhook_allow_private=True, max_webhooks_per_user=2)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        codes = [
            (
                await client.post(
                    "/api/me/webhooks", json={"url": f"http://127.0.0.1:9/{i}"}, headers=api.auth(user)
                )
            ).status_code
            for i in range(3)
        ]
    assert codes == [201, 201, 409]


@pytest.mark.parametrize("owner", ["user", "deployment"])
async def test_two_creations_at_once_cannot_both_pass_the_cap(
    store: Store, db_url: str, user: uuid.UUID, owner: str
) -> None:
    """The second creation waits for the first's transaction and then counts its endpoint."""
    owner_id = user if owner == "user" else None
    new = {"secret": SECRET, "events": ["job.completed"], "description": None, "max_endpoints": 1}
    async with store.session() as first, store.session() as second:
        async with first.conn.transaction():
            made = await first.webhooks.create_endpoint(owner_id, url="http://127.0.0.1:9/a", **new)
            assert made is not None
            racing = asyncio.create_task(
                second.webhooks.create_endpoint(owner_id, url="http://127.0.0.1:9/b", **new)
            )

            async def waiting() -> bool:
                return bool(
                    await fetch_all(
                        db_url,
                        "select 1 from pg_stat_activity where wait_event_type = 'Lock'"
                        " and datname = current_database()",
                    )
                )

            await wait_until(waiting, timeout=10, what="the second creation to wait for the first")
        assert await racing is None
    rows = await fetch_all(
        db_url, "select url from aijobs.webhook_endpoints where user_id is not distinct from %s", owner_id
    )
    assert [r["url"] for r in rows] == ["http://127.0.0.1:9/a"]


def _delivery(url: str) -> ClaimedDelivery:
    body = json.dumps({"type": "job.completed", "data": {"id": str(uuid.uuid4())}})
    return ClaimedDelivery(
        id=uuid.uuid4(), event="job.completed", body=body, attempt=1, url=url, secret=SECRET
    )


async def test_a_private_target_is_refused_at_delivery_too(settings: Settings, store: Store) -> None:
    """A URL that got in anyway (or whose name now resolves elsewhere) is checked again when the
    delivery connects: nothing reaches the loopback receiver."""
    deliverer = Deliverer(store, "test", settings.model_copy(update={"webhook_allow_private": False}))
    try:
        async with WebhookReceiver() as receiver:
            status, error = await deliverer.send(_delivery(receiver.url))
            status_by_name, error_by_name = await deliverer.send(
                _delivery(receiver.url.replace("127.0.0.1", "localhost"))
            )
        assert receiver.requests == []
    finally:
        await deliverer.client.aclose()
    assert status is None
    assert error == "ConnectError: refused: 127.0.0.1 resolves to 127.0.0.1, a loopback address"
    assert status_by_name is None
    assert error_by_name is not None
    assert "refused: localhost resolves to" in error_by_name


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://[2606:4700:4700::1111]abc/hook", "InvalidURL: Invalid port: 'abc'"),
        ("https://xn--zz.example/hook", "IDNAError: Invalid A-label"),
    ],
)
async def test_an_unsendable_url_that_got_in_is_a_failed_attempt_and_the_window_still_ends_it(
    hook_settings: Settings, store: Store, db_url: str, user: uuid.UUID, url: str, error: str
) -> None:
    """The HTTP client raising something other than its transport errors still records the
    attempt: the retry window ends the delivery instead of it being claimed again forever."""
    tuned = hook_settings.model_copy(update={"webhook_retry_window_seconds": 0.3})
    await add_endpoint(db_url, url, user_id=user)
    await create_job(store, user)
    async with running_worker(tuned, store):
        await failed_for_good(db_url)
    [row] = await deliveries(db_url)
    assert row["attempts"] >= 1
    assert row["codes"] == [None] * row["attempts"]
    assert row["last_error"] == error
    attempts = await fetch_all(
        db_url, "select error from aijobs.webhook_delivery_attempts where delivery_id = %s", row["id"]
    )
    assert [a["error"] for a in attempts] == [error] * row["attempts"]


async def test_receivers_that_hang_redirect_or_answer_hugely_cost_bounded_time_and_memory(
    hook_settings: Settings, store: Store
) -> None:
    deliverer = Deliverer(store, "test", hook_settings.model_copy(update={"webhook_timeout_seconds": 0.5}))
    try:
        async with WebhookReceiver(script=["hang"]) as hanging:
            status, error = await deliverer.send(_delivery(hanging.url))
        assert (status, error) == (None, "no complete answer within 0.5s")

        async with WebhookReceiver(script=["redirect"]) as redirecting, WebhookReceiver() as elsewhere:
            redirecting.redirect_to = elsewhere.url
            status, error = await deliverer.send(_delivery(redirecting.url))
            assert elsewhere.requests == [], "a redirect is never followed"
        assert status == 302
        assert error == f"answered 302, a redirect (not followed) to {elsewhere.url}"

        async with WebhookReceiver(script=["huge"]) as huge:
            status, error = await deliverer.send(_delivery(huge.url))
            # The client hung up after its first kilobyte: the receiver's writes stop far short.
            await wait_until(lambda: _stalled(huge), timeout=10, what="the receiver to stop writing")
        assert status == 500
        assert error is not None
        assert len(error) <= MAX_ERROR_CHARS
        assert error.startswith("answered 500: xxxx")
        assert huge.huge_written < HUGE_BYTES / 4
    finally:
        await deliverer.client.aclose()


async def _stalled(receiver: WebhookReceiver) -> bool:
    before = receiver.huge_written
    await asyncio.sleep(0.2)
    return receiver.huge_written == before


async def test_a_description_postgresql_cannot_store_is_a_422_not_a_500(
    user: uuid.UUID, start_api: StartApi
) -> None:
    api = start_api(webhook_allow_private=True)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        for bad in ('"nul \\u0000 here"', '"lone \\ud800 surrogate"'):
            body = f'{{"url": "http://127.0.0.1:9/x", "description": {bad}}}'
            answer = await client.post(
                "/api/me/webhooks",
                content=body,
                headers={**api.auth(user), "content-type": "application/json"},
            )
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["field"] == "body.description"


async def test_retention_never_deletes_a_delivery_being_replayed(store: Store, db_url: str) -> None:
    """A month-old failed delivery is replayed (set pending again) while retention prunes: the
    prune passes over the row the replay holds, and the replayed delivery is kept."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as owner:
        endpoint = await (
            await owner.execute(
                "insert into aijobs.webhook_endpoints (url, secret, events)"
                " values ('http://127.0.0.1:9/hook', %s, array['job.completed']) returning id",
                (SECRET,),
            )
        ).fetchone()
        assert endpoint is not None
        delivery = await (
            await owner.execute(
                "insert into aijobs.webhook_deliveries (endpoint_id, job_id, user_id, event, payload, status,"
                " updated_at) values (%s, gen_random_uuid(), gen_random_uuid(), 'job.completed', '{}',"
                " 'failed', now() - interval '30 days') returning id",
                (endpoint[0],),
            )
        ).fetchone()
        assert delivery is not None
        async with owner.transaction():
            await owner.execute(
                "update aijobs.webhook_deliveries set status = 'pending', updated_at = now() where id = %s",
                (delivery[0],),
            )
            async with store.session() as session:
                pruned = await asyncio.wait_for(session.webhooks.prune(7 * 86400.0, 100), timeout=5)
        assert pruned == 0
        kept = await (
            await owner.execute("select status from aijobs.webhook_deliveries where id = %s", (delivery[0],))
        ).fetchone()
    assert kept == ("pending",)
