"""Paced message edits for streaming replies into Discord (no Discord needed)."""

from __future__ import annotations

import pytest

from examples.chatcore.split import split_message
from examples.discord_bot.edits import EditThrottle, RateLimited, StreamRenderer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeChannel:
    """Records sends and edits; a message is its index in ``messages``."""

    def __init__(self, clock: FakeClock, *, rate_limited_edits: int = 0) -> None:
        self.clock = clock
        self.messages: list[str] = []
        self.operations = 0
        self.rate_limited_edits = rate_limited_edits

    async def send(self, content: str) -> int:
        self.operations += 1
        self.messages.append(content)
        return len(self.messages) - 1

    async def edit(self, message: int, content: str) -> None:
        self.operations += 1
        if self.rate_limited_edits:
            self.rate_limited_edits -= 1
            raise RateLimited(retry_after=2.0)
        self.messages[message] = content


def renderer(
    channel: FakeChannel, throttle: EditThrottle, *, limit: int = 2000
) -> StreamRenderer[int]:
    return StreamRenderer(
        7,
        send=channel.send,
        edit=channel.edit,
        throttle=throttle,
        limit=limit,
        sleep=channel.clock.sleep,
    )


def test_first_edit_is_allowed_at_once() -> None:
    throttle = EditThrottle(clock=FakeClock())
    assert throttle.ready(1)
    assert throttle.delay(1) == 0.0


def test_edit_waits_one_interval_per_channel() -> None:
    clock = FakeClock()
    throttle = EditThrottle(interval=1.0, clock=clock)
    throttle.record_edit(1)
    assert not throttle.ready(1)
    assert throttle.delay(1) == pytest.approx(1.0)
    assert throttle.ready(2)
    clock.now += 1.0
    assert throttle.ready(1)


def test_rate_limit_doubles_the_interval_and_honours_retry_after() -> None:
    clock = FakeClock()
    throttle = EditThrottle(interval=1.0, max_interval=8.0, clock=clock)
    throttle.record_rate_limit(1, retry_after=5.0)
    assert throttle.interval_for(1) == 2.0
    assert throttle.delay(1) == pytest.approx(5.0)
    throttle.record_rate_limit(1)
    throttle.record_rate_limit(1)
    throttle.record_rate_limit(1)
    assert throttle.interval_for(1) == 8.0  # capped at max_interval


def test_successful_edits_relax_the_backoff() -> None:
    throttle = EditThrottle(interval=1.0, clock=FakeClock())
    throttle.record_rate_limit(1)
    throttle.record_rate_limit(1)
    assert throttle.interval_for(1) == 4.0
    throttle.record_edit(1)
    assert throttle.interval_for(1) == 2.0
    throttle.record_edit(1)
    throttle.record_edit(1)
    assert throttle.interval_for(1) == 1.0


def test_forgets_least_recently_used_channels() -> None:
    throttle = EditThrottle(max_channels=2, clock=FakeClock())
    for channel in (1, 2, 3):
        throttle.record_edit(channel)
    assert len(throttle) == 2
    assert throttle.ready(1)
    assert not throttle.ready(3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interval": 0}, "interval must be > 0"),
        ({"interval": 2.0, "max_interval": 1.0}, "max_interval must be >= interval"),
        ({"max_channels": 0}, "max_channels must be >= 1"),
    ],
)
def test_rejects_bad_options(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EditThrottle(**options)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_stream_posts_at_once_then_edits_at_most_once_per_interval() -> None:
    clock = FakeClock()
    channel = FakeChannel(clock)
    render = renderer(channel, EditThrottle(interval=1.0, clock=clock))
    for word in ["Hello", " there", ",", " friend"]:
        await render.feed(word)
    assert channel.messages == ["Hello"]
    clock.now += 1.0
    await render.feed("!")
    assert channel.messages == ["Hello there, friend!"]
    assert channel.operations == 2


@pytest.mark.anyio
async def test_finish_delivers_the_complete_text() -> None:
    clock = FakeClock()
    channel = FakeChannel(clock)
    render = renderer(channel, EditThrottle(interval=1.0, clock=clock))
    await render.feed("Hello")
    await render.feed(" world")
    await render.finish()
    assert channel.messages == ["Hello world"]
    assert render.shown == ("Hello world",)
    assert clock.slept == [1.0]  # it waited for the throttle rather than dropping the edit


@pytest.mark.anyio
async def test_long_reply_continues_in_new_messages() -> None:
    clock = FakeClock()
    channel = FakeChannel(clock)
    render = renderer(channel, EditThrottle(interval=1.0, clock=clock), limit=100)
    text = "```python\n" + "".join(f"x = {i}\n" for i in range(60)) + "```\nDone."
    for start in range(0, len(text), 7):
        await render.feed(text[start : start + 7])
        clock.now += 1.0
    await render.finish()
    assert channel.messages == split_message(text, limit=100)
    assert len(channel.messages) > 3


@pytest.mark.anyio
async def test_rate_limited_update_is_skipped_and_backs_off() -> None:
    clock = FakeClock()
    channel = FakeChannel(clock, rate_limited_edits=1)
    throttle = EditThrottle(interval=1.0, clock=clock)
    render = renderer(channel, throttle)
    await render.feed("a")
    clock.now += 1.0
    await render.feed("b")  # this edit gets a 429
    assert channel.messages == ["a"]
    assert throttle.interval_for(7) == 2.0
    await render.finish()
    assert channel.messages == ["ab"]
    assert clock.slept == [2.0]  # retry_after


@pytest.mark.anyio
async def test_finish_gives_up_after_repeated_rate_limits() -> None:
    clock = FakeClock()
    channel = FakeChannel(clock, rate_limited_edits=100)
    render = renderer(channel, EditThrottle(interval=1.0, clock=clock))
    await render.feed("a")
    clock.now += 1.0
    await render.feed("b")
    with pytest.raises(RateLimited):
        await render.finish()
    assert channel.messages == ["a"]


@pytest.mark.anyio
async def test_finish_gives_up_rather_than_wait_too_long() -> None:
    clock = FakeClock()
    channel = FakeChannel(clock)
    throttle = EditThrottle(interval=1.0, clock=clock)
    render = renderer(channel, throttle)
    await render.feed("a")
    throttle.record_rate_limit(7, retry_after=3600.0)
    await render.feed("b")
    with pytest.raises(RateLimited):
        await render.finish()
    assert clock.slept == []
