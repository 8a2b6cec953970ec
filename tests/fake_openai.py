"""A real HTTP server speaking OpenAI's chat-completions protocol, scripted per test.

The official openai client talks to it over real sockets, so tests exercise the same code path
a production endpoint would: headers, status codes, Retry-After, timeouts, malformed bodies.
Each request takes the next scripted reply; every request is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import free_port, serve_asgi

DEFAULT_MODEL_VERSION = "gpt-4o-mini-2024-07-18"


@dataclass
class Reply:
    status: int = 200
    content: str | None = None  # the assistant message, for 200 answers
    body: bytes | None = None  # a raw body instead of a chat completion
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    input_tokens: int = 120
    output_tokens: int = 40


def answer(obj: Any, **kwargs: Any) -> Reply:
    return Reply(content=json.dumps(obj), **kwargs)


def text(content: str) -> Reply:
    return Reply(content=content)


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps({"error": {"message": f"scripted {code}", "type": "scripted", "code": None}}).encode()
    return Reply(status=code, body=body, headers=headers or {})


@dataclass
class FakeOpenAI:
    url: str
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Answers chosen by the request instead of by order: for concurrent calls (a fan-out).
    respond: Callable[[dict[str, Any]], Reply] | None = None

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests.clear()

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        if self.respond is None and not self.replies:
            return JSONResponse({"error": {"message": "no scripted reply left"}}, status_code=599)
        reply = self.respond(body) if self.respond is not None else self.replies.pop(0)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.body is not None:
            return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=reply.headers)
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": DEFAULT_MODEL_VERSION,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply.content}}],
            "usage": {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                      "total_tokens": reply.input_tokens + reply.output_tokens},
        }
        return JSONResponse(completion, status_code=reply.status, headers=reply.headers)


@asynccontextmanager
async def serve_fake_openai() -> AsyncIterator[FakeOpenAI]:
    port = free_port()
    fake = FakeOpenAI(url=f"http://127.0.0.1:{port}/v1")
    app = Starlette(routes=[Route("/v1/chat/completions", fake.handle, methods=["POST"])])
    async with serve_asgi(app, port):
        yield fake
