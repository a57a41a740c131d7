"""HistoryStore's trim modes against a prefix-caching LLM server: prompt tokens evaluated.

A server that caches the prompt's prefix (Ollama and llama.cpp per slot, vLLM's prefix
cache, hosted APIs' cached input) evaluates only the tokens after the longest common
prefix with the channel's previous prompt. This benchmark replays one long conversation
(300 turns: a user message, the prompt built for it, the assistant's answer; each
message of 20 to 120 tokens drawn at random, seeded) through a store with a budget of
2,000 tokens, in each mode, and counts per turn:

- the prompt's tokens after its longest common prefix with the previous turn's prompt,
  token by token, a chat template's 4 tokens per message included (``message_overhead``);
- the prompt's size, the context the model gets (as a share of the budget).

``trim="sliding"`` (the baseline) sends the newest messages that fit: once the budget is
full its first message changes every turn, and everything after the system prompt is
evaluated again. ``trim="stable"`` keeps the window until it no longer fits, then trims
it to ``stable_fill`` of the budget: most turns evaluate only the new messages. Rows for
other ``stable_fill`` values show the trade-off between tokens evaluated and context
kept. ``as_messages`` is timed in a replay of its own (appends and prompts only, the garbage
collector paused as in the other benchmarks), the modes taking turns in alternating order
across repetitions: the token bookkeeping above would otherwise weigh on the calls after it.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from botperf import HistoryStore

from ._harness import Measurement, Report, Target, tick

TURNS = 300
BUDGET = 2_000
MAX_MESSAGES = 50
OVERHEAD = 4
SHORTEST, LONGEST = 20, 120
FILLS = (0.3, 0.5, 0.7, 0.8)
DEFAULT_FILL = 0.5
SYSTEM_PROMPT = " ".join(f"system{index}" for index in range(30))

SLIDING = "sliding"

TrimMode = Literal["sliding", "stable"]


def stable(fill: float) -> str:
    return f"stable, stable_fill={fill}"


def words(text: str) -> int:
    """The benchmark's tokenizer: one token per word, the words being distinct tokens."""
    return len(text.split())


def conversation(seed: int = 17) -> list[tuple[str, str]]:
    """The 300 turns' (question, answer) texts, each word a token of its own."""
    rng = random.Random(seed)

    def text(turn: int, who: str) -> str:
        return " ".join(f"{who}{turn}.{index}" for index in range(rng.randint(SHORTEST, LONGEST)))

    return [(text(turn, "q"), text(turn, "a")) for turn in range(TURNS)]


def template_tokens(prompt: Sequence[dict[str, str]]) -> list[str]:
    """A prompt as a chat template tokenizes it: 4 tokens of markers per message."""
    tokens: list[str] = []
    for message in prompt:
        tokens += ["<|im_start|>", message["role"], "\n", *message["content"].split()]
        tokens.append("<|im_end|>")
    return tokens


def common_prefix(first: Sequence[str], second: Sequence[str]) -> int:
    length = 0
    for mine, theirs in zip(first, second, strict=False):
        if mine != theirs:
            break
        length += 1
    return length


@dataclass(frozen=True)
class Replay:
    """What one replay of the conversation counted."""

    evaluated: int  # prompt tokens after the common prefix, over all turns
    mean_prompt: float  # tokens per prompt, on average
    trims: int  # turns whose prompt did not start with the previous one


def new_store(trim: TrimMode, fill: float) -> HistoryStore[int]:
    return HistoryStore(
        max_messages=MAX_MESSAGES,
        max_tokens=BUDGET,
        count_tokens=words,
        system_prompt=SYSTEM_PROMPT,
        trim=trim,
        stable_fill=fill,
        message_overhead=OVERHEAD,
    )


def replay(trim: TrimMode, fill: float, turns: Sequence[tuple[str, str]]) -> Replay:
    store = new_store(trim, fill)
    previous: list[str] = []
    evaluated = sizes = trims = 0
    for question, answer in turns:
        store.append(1, "user", question)
        prompt = store.as_messages(1)
        tokens = template_tokens(prompt)
        shared = common_prefix(previous, tokens)
        trims += shared < len(previous)
        evaluated += len(tokens) - shared
        sizes += len(tokens)
        previous = tokens
        store.append(1, "assistant", answer)
    return Replay(evaluated, sizes / len(turns), trims)


def as_messages_ns(trim: TrimMode, fill: float, turns: Sequence[tuple[str, str]]) -> float:
    """Mean ns per ``as_messages()`` call over a replay of the conversation."""
    store = new_store(trim, fill)
    as_messages, append = store.as_messages, store.append
    elapsed = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for question, answer in turns:
            append(1, "user", question)
            start = time.perf_counter_ns()
            as_messages(1)
            elapsed += time.perf_counter_ns() - start
            append(1, "assistant", answer)
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / len(turns)


def modes() -> Iterator[tuple[str, TrimMode, float]]:
    yield SLIDING, "sliding", DEFAULT_FILL
    for fill in FILLS:
        yield stable(fill), "stable", fill


def run(quick: bool) -> Report:
    report = Report(name="history_cache: trim modes against a prefix-caching LLM server")
    turns = conversation()
    # Token counts are the same in every replay (it is deterministic): one sample each.
    first = {name: replay(trim, fill, turns) for name, trim, fill in modes()}
    repeat = 9 if quick else 31
    timings: dict[str, list[float]] = {name: [] for name, _, _ in modes()}
    for repetition in range(repeat):
        # The modes take turns, in alternating order, so that load hits them all alike.
        order = list(modes())
        for name, trim, fill in order if repetition % 2 else reversed(order):
            timings[name].append(as_messages_ns(trim, fill, turns))
        tick()
    for name in first:
        params = {"turns": TURNS, "budget": BUDGET}
        report.measurements += [
            Measurement(
                group=f"prompt tokens evaluated over {TURNS} turns (after the cached prefix)",
                implementation=name,
                unit="tokens",
                samples=(float(first[name].evaluated),),
                baseline=name == SLIDING,
                params=params,
            ),
            Measurement(
                group="mean prompt size, % of the 2,000-token budget",
                implementation=name,
                unit="%",
                samples=(100 * first[name].mean_prompt / BUDGET,),
                baseline=name == SLIDING,
                higher_is_better=True,
                params=params,
            ),
            Measurement(
                group=f"turns whose prompt changed before its end (of {TURNS})",
                implementation=name,
                unit="turns",
                samples=(float(first[name].trims),),
                baseline=name == SLIDING,
                params=params,
            ),
            Measurement(
                group="as_messages() per call, in the replay",
                implementation=name,
                unit="ns/call",
                samples=tuple(timings[name]),
                baseline=name == SLIDING,
                params=params,
            ),
        ]
    report.targets += targets(report, first)
    sliding, chosen = first[SLIDING], first[stable(DEFAULT_FILL)]
    report.notes.append(
        f"per turn on average: sliding evaluates "
        f"{sliding.evaluated / TURNS:,.0f} tokens on average, stable (fill {DEFAULT_FILL}) "
        f"{chosen.evaluated / TURNS:,.0f}, re-evaluating its whole prompt on "
        f"{chosen.trims} of {TURNS} turns"
    )
    return report


def targets(report: Report, first: dict[str, Replay]) -> list[Target]:
    name = stable(DEFAULT_FILL)
    sliding_cost = report.find("as_messages() per call, in the replay", SLIDING).median
    stable_cost = report.find("as_messages() per call, in the replay", name).median
    return [
        Target(
            description=f"prompt tokens evaluated, sliding over {name}",
            measured=first[SLIDING].evaluated / first[name].evaluated,
            target=4.0,
            unit="x",
            higher_is_better=True,
        ),
        Target(
            description=f"{name}: mean prompt size, share of the budget",
            measured=100 * first[name].mean_prompt / BUDGET,
            target=60.0,
            unit="%",
            higher_is_better=True,
        ),
        Target(
            description=f"as_messages() ns per call, {name} over sliding",
            measured=stable_cost / sliding_cost,
            target=1.2,
            unit="x",
        ),
    ]
