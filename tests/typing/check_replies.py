"""Checked by ``mypy --strict``: the streamed replies' typed API is a contract."""

from __future__ import annotations

from dataclasses import dataclass

from typing_extensions import assert_type

from botperf import EditPacer, ReplyStreamer, split_message

pacer = EditPacer(interval=1.0, max_interval=30.0, max_targets=10_000)
assert_type(pacer.delay(123), float)
assert_type(pacer.interval_for("chat"), float)
assert_type(split_message("text", max_length=2000), list[str])


@dataclass
class SentMessage:
    id: int


async def send(text: str) -> SentMessage:
    return SentMessage(1)


async def edit(message: SentMessage, text: str) -> None:
    return None


async def edit_by_id(message_id: int, text: str) -> None:
    return None


async def use_streamer() -> None:
    reply = ReplyStreamer(send, edit, target=123, pacer=pacer, max_length=2000)
    assert_type(reply, ReplyStreamer[SentMessage])
    assert_type(await reply.feed("chunk"), None)
    assert_type(await reply.finish(), list[SentMessage])
    assert_type(reply.text, str)
    assert_type(reply.handles, list[SentMessage])
    ReplyStreamer(send, edit_by_id, target=1, pacer=pacer)  # type: ignore[misc]
    ReplyStreamer(send, edit, target=1, pacer=pacer, retry_after=lambda exc: 1.0)
    await reply.feed(b"bytes")  # type: ignore[arg-type]
