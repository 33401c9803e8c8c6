"""Routing: which deployment serves a request, with retries, fallbacks and cool-downs.

A catalog model may have several deployments (``deployments:`` entries overriding base_url,
api_key, upstream_model); the least busy one that is not cooling down is tried first. A
retryable failure (connection error, timeout, 429, 5xx) is retried with exponential backoff
and jitter, honouring Retry-After, then the model's ``fallbacks`` are tried in order. A
deployment's own fault (its key refused, its account out of quota, its upstream model unknown)
is not retried on it: the other deployments are tried at once (within the model's
``max_retries + 1`` attempts), then the fallbacks. A stream is only retried before its first
chunk: once a byte went to the client, a failure is final. What routing took (retries,
fallbacks, the deployment that served, the time spent waiting on upstreams) is noted in the
request's :class:`Route`, for its ledger row.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from spaceai.catalog import Catalog, ModelConfig
from spaceai.providers.base import Provider
from spaceai.providers.fit import Unfit, fit
from spaceai.types import ChatRequest, GatewayError, UpstreamError

_BASE_BACKOFF_S = 0.25
_MAX_BACKOFF_S = 8.0
_MAX_RETRY_AFTER_S = 30.0
_COOLDOWN_S = 10.0
_FAILS_TO_COOL = 3
_RECENT = 50  # attempts a deployment's recent error rate is taken over


@dataclasses.dataclass(slots=True)
class Route:
    """What routing one request took, noted by the router as it goes (the ledger row's).

    ``upstream_s`` runs from the first attempt to the serving answer (for a stream, its first
    chunk) or the last failure: every attempt, and the backoff between them, is time spent on
    upstreams, not the gateway's own. A stream keeps waiting on its upstream from
    ``routed_at`` until it ends.
    """

    retries: int = 0  # attempts after the first on a model, over the whole chain
    fallbacks: int = 0  # models of the fallback chain moved on to
    upstream_s: float = 0.0
    routed_at: float = 0.0  # time.perf_counter() when routing ended, 0 before
    deployment: str | None = None  # the serving deployment's upstream, no credentials


def _origin(config: ModelConfig) -> str | None:
    """scheme://host[:port] of a deployment's upstream: where it is, without credentials."""
    url = urlsplit(config.base_url or "")
    if not url.scheme:
        return None
    return f"{url.scheme}://{url.hostname or ''}{':' + str(url.port) if url.port else ''}"


class Deployment:
    """One way to reach a model, with its in-flight count and health."""

    __slots__ = ("config", "label", "in_flight", "failures", "cool_until", "recent")

    def __init__(self, config: ModelConfig, label: str | None) -> None:
        self.config = config
        self.label = label  # named in the ledger rows it serves
        self.in_flight = 0
        self.failures = 0
        self.cool_until = 0.0
        self.recent: collections.deque[bool] = collections.deque(maxlen=_RECENT)  # failed?

    def succeeded(self) -> None:
        self.failures = 0
        self.recent.append(False)

    def health(self) -> dict[str, Any]:
        """What an operator sees of it: where (no credentials), load, cool-down, error rate."""
        recent = self.recent
        return {"upstream": _origin(self.config), "in_flight": self.in_flight,
                "cooling_down_s": round(max(0.0, self.cool_until - time.monotonic()), 1),
                "recent_attempts": len(recent),
                "recent_error_rate": round(sum(recent) / len(recent), 3) if recent else None}

    def failed(self) -> None:
        self.recent.append(True)
        self.failures += 1
        if self.failures >= _FAILS_TO_COOL:
            self.cool_until = time.monotonic() + _COOLDOWN_S
            self.failures = 0


def _deployments(model: ModelConfig) -> list[Deployment]:
    """A model's deployments, each labelled by its upstream (numbered where two share one)."""
    if not model.deployments:
        return [Deployment(model, _origin(model))]
    configs = []
    for d in model.deployments:
        fields = {k: v for k, v in d.items() if k in ("base_url", "api_key", "upstream_model",
                                                       "timeout_s", "connect_timeout_s",
                                                       "first_byte_timeout_s",
                                                       "stream_idle_timeout_s")}
        configs.append(dataclasses.replace(model, deployments=[], **fields))
    origins = [_origin(c) for c in configs]
    return [Deployment(c, o if origins.count(o) == 1 else f"{o or model.id}#{i + 1}")
            for i, (c, o) in enumerate(zip(configs, origins, strict=True))]


async def first_chunk(it: AsyncIterator[Any], model: ModelConfig) -> Any:
    """The first item of a provider stream: an empty stream is a retryable failure, and a
    failure closes the stream. Awaiting it inside a router attempt is what lets retries and
    fallbacks happen before anything reached the client."""
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        raise UpstreamError(502, f"model {model.id}: upstream sent an empty stream",
                            retryable=True) from None
    except BaseException:
        await it.aclose()
        raise


class _InFlight:
    """A stream that counts as in flight on its deployment until it ends or is closed, so
    least-in-flight balancing sees long streams, not just their first byte."""

    __slots__ = ("it", "dep")

    def __init__(self, it: AsyncIterator[dict[str, Any]], dep: Deployment | None) -> None:
        self.it = it
        self.dep = dep
        if dep is not None:
            dep.in_flight += 1

    def __aiter__(self) -> _InFlight:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self.it.__anext__()
        except BaseException:
            self._done()
            raise

    async def aclose(self) -> None:
        self._done()
        await self.it.aclose()

    def _done(self) -> None:
        if self.dep is not None:
            self.dep.in_flight -= 1
            self.dep = None


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, _MAX_RETRY_AFTER_S)
    base = min(_MAX_BACKOFF_S, _BASE_BACKOFF_S * 2**attempt)
    return base / 2 + random.random() * base / 2  # "equal jitter"


class Router:
    """Sends a request to the right provider, handling deployments, retries and fallbacks."""

    def __init__(self, catalog: Catalog, providers: dict[str, Provider],
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.catalog = catalog
        self.providers = providers
        self.sleep = sleep
        self._deployments = {m.id: _deployments(m) for m in catalog}
        self._candidates = {m.id: self._chain(m) for m in catalog}

    def _chain(self, model: ModelConfig) -> list[ModelConfig]:
        seen, out = set(), []
        for mid in [model.id, *model.fallbacks]:
            m = self.catalog.get(mid)
            if m is not None and mid not in seen:
                seen.add(mid)
                out.append(m)
        return out

    def candidates(self, model: ModelConfig) -> list[ModelConfig]:
        """The model, then its fallbacks, in order (without repeats); built at start-up."""
        return self._candidates.get(model.id) or self._chain(model)

    def _pick(self, model: ModelConfig, tried: set[int]) -> Deployment:
        deps = self._deployments[model.id]
        if len(deps) == 1:
            return deps[0]
        now = time.monotonic()
        fresh = [d for d in deps if id(d) not in tried] or deps
        healthy = [d for d in fresh if d.cool_until <= now] or fresh
        return min(healthy, key=lambda d: d.in_flight)

    async def _attempts(self, model: ModelConfig, call: Callable[[Provider, ModelConfig], Any],
                        route: Route):
        """Run ``call`` on deployments of the model and its fallbacks until one succeeds,
        noting in ``route`` the retries, fallbacks, serving deployment and time it took."""
        last: GatewayError | None = None
        began = time.perf_counter()
        try:
            for index, candidate in enumerate(self.candidates(model)):
                route.fallbacks = index
                missing = candidate.missing_credential()
                if missing:
                    last = GatewayError(503, f"model {candidate.id} is not configured: set "
                                        f"{missing}", type="service_unavailable",
                                        code="model_not_configured")
                    continue
                provider = self.providers[candidate.provider]
                tried: set[int] = set()
                for attempt in range(candidate.max_retries + 1):
                    if attempt:
                        route.retries += 1
                    dep = self._pick(candidate, tried)
                    tried.add(id(dep))
                    dep.in_flight += 1
                    try:
                        result = await call(provider, dep.config)
                    except Unfit as exc:  # this fallback cannot honour it: the next may
                        if candidate is model:
                            raise
                        last = last or exc  # the client hears why the model it named failed
                        break
                    except UpstreamError as exc:
                        dep.failed()
                        last = exc
                        if exc.retryable:
                            if attempt < candidate.max_retries:
                                await self.sleep(backoff_delay(attempt, exc.retry_after))
                            continue
                        if not exc.deployment_fault:
                            raise
                        if len(tried) == len(self._deployments[candidate.id]):
                            break  # every deployment refused: the fallbacks may serve
                        continue  # another deployment (its own key, account, upstream model)
                    finally:
                        dep.in_flight -= 1
                    route.deployment = dep.label
                    dep.succeeded()
                    return candidate, result
            assert last is not None
            raise last
        finally:
            route.routed_at = time.perf_counter()
            route.upstream_s = route.routed_at - began

    def health(self, model_id: str) -> list[dict[str, Any]]:
        """The health of each deployment of a model (the console's models view)."""
        return [dep.health() for dep in self._deployments.get(model_id, ())]

    def _deployment_of(self, config: ModelConfig) -> Deployment | None:
        for dep in self._deployments.get(config.id, ()):
            if dep.config is config:
                return dep
        return None

    async def run(self, model: ModelConfig, call: Callable[[Provider, ModelConfig], Any],
                  route: Route) -> tuple[ModelConfig, Any]:
        """Any provider call, with deployments, retries and fallbacks: (served model, result)."""
        return await self._attempts(model, call, route)

    async def complete(self, req: ChatRequest, model: ModelConfig, route: Route
                       ) -> tuple[ModelConfig, dict[str, Any]]:
        """A non-streaming answer: (the model that served it, the OpenAI-shaped body)."""
        if req.prompt is not None:
            return await self._attempts(
                model, lambda p, m: p.completion(fit(req, m).req, m), route)
        return await self._attempts(model, lambda p, m: p.chat(fit(req, m).req, m), route)

    async def open_stream(self, req: ChatRequest, model: ModelConfig, route: Route
                          ) -> tuple[ModelConfig, dict[str, Any], AsyncIterator[dict[str, Any]]]:
        """Start a stream: (model serving it, its first chunk, the iterator of the rest).

        Retries and fallbacks happen here, before anything reached the client.
        """

        async def first(provider: Provider, m: ModelConfig):
            fitted = fit(req, m).req
            if req.prompt is not None:
                it = provider.completion_stream(fitted, m)
            else:
                it = provider.chat_stream(fitted, m)
            chunk = await first_chunk(it, m)
            return chunk, self.track(it, m)

        served, (chunk, it) = await self._attempts(model, first, route)
        return served, chunk, it

    def track(self, it: AsyncIterator[Any], config: ModelConfig) -> AsyncIterator[Any]:
        """``it``, counted as in flight on its deployment until it ends or is closed."""
        return _InFlight(it, self._deployment_of(config))
