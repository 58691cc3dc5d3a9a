"""A fake business backend on 127.0.0.1: the Authentication URL, with switches.

Each test asks for its own endpoint path and says how it should answer
(status, JSON or raw body, delay); answers are given in order and the last
one repeats. Every request is recorded, headers and body, for assertions.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from aiohttp import web


@dataclass(frozen=True)
class Answer:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    delay: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class Recorded:
    headers: dict[str, str]
    body: Any
    raw: bytes = b""


def verified(**data: Any) -> Answer:
    return Answer(json={"status": True, "message": "ok", "data": data})


@dataclass
class FakeCustomerAPI:
    url: str = ""
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    requests: dict[str, list[Recorded]] = field(default_factory=lambda: defaultdict(list))
    responders: dict[str, Callable[[Any], Answer]] = field(default_factory=dict)

    def endpoint(self, *answers: Answer) -> str:
        """A fresh Authentication URL answering ``answers`` in order (the last one repeats)."""
        path = f"/auth/{uuid4().hex}"
        self.answers[path] = list(answers) or [Answer()]
        return self.url + path

    def responder(self, answer: Callable[[Any], Answer]) -> str:
        """A fresh Authentication URL whose answer is computed from each request's JSON body."""
        path = f"/auth/{uuid4().hex}"
        self.responders[path] = answer
        return self.url + path

    def received(self, url: str) -> list[Recorded]:
        return self.requests[url.removeprefix(self.url)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        self.requests[request.path].append(Recorded(dict(request.headers), body, raw))
        if request.path in self.responders:
            answer = self.responders[request.path](body)
        elif queue := self.answers.get(request.path):
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
        else:
            return web.Response(status=404)
        if answer.delay:
            await asyncio.sleep(answer.delay)  # time is the subject: a business this slow to answer
        payload = answer.body if answer.body is not None else json.dumps(answer.json).encode()
        return web.Response(status=answer.status, body=payload, content_type=answer.content_type)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app
