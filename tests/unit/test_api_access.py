"""The REST API's review caches and budgets: bounded, expiring, per client; no cluster, a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from schedexec.api.access import Gate, executions
from schedexec.api.errors import ApiError
from schedexec.api.limits import Buckets, ExpiringLru, RateLimited
from schedexec.settings import ApiSettings
from tests.unit.api_fake import FakeKube


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_never_exceeds_its_size_and_evicts_the_least_recently_used() -> None:
    cache: ExpiringLru[int] = ExpiringLru(3, ttl=30, clock=Clock())
    for key in "abc":
        cache.put(key, 1)
    assert cache.get("a") == (1,)  # a is now the most recently used
    cache.put("d", 1)
    assert len(cache) == 3 and cache.get("b") is None and cache.get("a") == (1,)


def test_an_answer_expires_after_its_ttl_and_a_stored_none_is_an_answer() -> None:
    clock = Clock()
    cache: ExpiringLru[None] = ExpiringLru(10, ttl=30, clock=clock)
    cache.put("refused", None)
    assert cache.get("refused") == (None,)
    clock.now += 30
    assert cache.get("refused") is None


def test_a_bucket_allows_its_burst_then_refills_at_its_rate_per_client() -> None:
    clock = Clock()
    buckets = Buckets(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        buckets.take("10.0.0.1")
    with pytest.raises(RateLimited) as limited:
        buckets.take("10.0.0.1")
    assert limited.value.retry_after == 1
    buckets.take("10.0.0.2")  # another client has its own bucket
    clock.now += 0.5
    buckets.take("10.0.0.1")  # one token refilled


def test_buckets_track_a_bounded_number_of_clients() -> None:
    buckets = Buckets(rate=1.0, burst=1, clients=2, clock=Clock())
    for client in ("a", "b", "c"):
        buckets.take(client)
    assert len(buckets._buckets) == 2


def gate(kube: FakeKube, clock: Clock, **settings: object) -> Gate:
    return Gate(kube, ApiSettings(**settings), clock=clock)  # type: ignore[arg-type]


def test_a_flood_of_garbage_tokens_never_pushes_out_accepted_ones() -> None:
    kube, clock = FakeKube(), Clock()
    kube.user("good", "alice")
    reviews = gate(kube, clock, review_cache_entries=100, review_burst_per_client=10_000)
    asyncio.run(reviews.caller("Bearer good", "10.0.0.1"))
    for i in range(1000):
        with pytest.raises(ApiError):
            asyncio.run(reviews.caller(f"Bearer junk-{i}", f"10.0.{i // 250}.{i % 250}"))
    asyncio.run(reviews.caller("Bearer good", "10.0.0.1"))
    assert kube.token_reviews.count("good") == 1, "still cached"
    assert len(reviews._refused) == 100, "the refused tokens' cache stays at its size"


def test_reviews_past_a_clients_burst_are_429_and_cached_answers_cost_nothing() -> None:
    kube, clock = FakeKube(), Clock()
    kube.user("good", "alice")
    reviews = gate(kube, clock, review_burst_per_client=2, reviews_per_second_per_client=1.0)
    for _ in range(10):
        asyncio.run(reviews.caller("Bearer good", "10.0.0.1"))  # one review, then cached
    with pytest.raises(ApiError) as refused:
        asyncio.run(reviews.caller("Bearer junk-1", "10.0.0.1"))
    assert refused.value.status == 401
    with pytest.raises(ApiError) as limited:
        asyncio.run(reviews.caller("Bearer junk-2", "10.0.0.1"))
    assert limited.value.status == 429 and limited.value.headers == {"Retry-After": "1"}
    assert kube.token_reviews == ["good", "junk-1"]


def test_requests_that_miss_the_cache_together_share_one_review_and_spend_one_token() -> None:
    """50 connections of one client poll with one token; its cached answers expire: the 50 requests that
    miss at once cost one TokenReview and one SubjectAccessReview, and none is refused 429 (burst 2)."""
    kube, clock = FakeKube(), Clock()
    kube.user("good", "alice")
    kube.grant("alice", "get", "ns")
    reviews = gate(kube, clock, review_burst_per_client=2, reviews_per_second_per_client=0.001)
    access = executions("get", "ns")

    async def poll() -> bool:
        return await reviews.may(await reviews.caller("Bearer good", "10.0.0.1"), access)

    async def together() -> list[bool]:
        return await asyncio.gather(*(poll() for _ in range(50)))

    assert asyncio.run(together()) == [True] * 50
    assert kube.token_reviews == ["good"] and len(kube.access_reviews) == 1
    assert not reviews._under_way, "nothing is left waiting"


def test_a_shared_review_that_fails_fails_every_request_waiting_for_it_and_is_asked_anew_next_time() -> None:
    kube, clock = FakeKube(), Clock()
    kube.user("good", "alice")
    reviews = gate(kube, clock, review_burst_per_client=10)
    calls: list[str] = []

    async def broken(token: str, audiences: list[str]) -> None:
        calls.append(token)
        raise ConnectionError("the API server is away")

    kube.review_token = broken  # type: ignore[method-assign,assignment]

    async def together() -> list[object]:
        return await asyncio.gather(
            *(reviews.caller("Bearer good", "10.0.0.1") for _ in range(5)), return_exceptions=True
        )

    assert all(isinstance(answer, ConnectionError) for answer in asyncio.run(together()))
    assert calls == ["good"]
    asyncio.run(together())
    assert calls == ["good", "good"], "a failed review is not cached"
