"""A small Ollama-compatible HTTP server on 127.0.0.1, for the demo and the tests.

It speaks enough of Ollama's REST API for a chat bot: ``POST /api/chat`` (one JSON object
with ``"stream": false``, NDJSON chunks otherwise, streaming being Ollama's default),
``GET /api/tags`` and ``GET /api/version``. Replies are canned and deterministic (see
`canned_reply`), delivered with a configurable time to first token and per-token delay,
and carry the statistics Ollama reports (durations in nanoseconds). ``prompt_eval_count`` is
what Ollama's prompt cache would leave to evaluate (`FakeOllama` has the model). The server
counts every
request per path and model and keeps the conversation each chat request sent, so a test can
check how many LLM calls really reached it and what they asked, and it can be told to
misbehave (`Fault`) the ways a real Ollama does.

Only the standard library is used: a ``ThreadingHTTPServer`` runs in a background thread, one
thread per connection, so it works the same whatever event loop the client runs on.

Example::

    with FakeOllama(time_to_first_token=0.05, token_delay=0.01) as server:
        client = ollama.AsyncClient(host=server.url)
        ...
        assert server.count("/api/chat", "llama3.2") == 1
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import hashlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, final

__all__ = [
    "DEFAULT_CACHE_SLOTS",
    "DEFAULT_MODELS",
    "FakeOllama",
    "Fault",
    "canned_reply",
    "prompt_tokens",
    "tokenize",
]

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("llama3.2:latest",)
"""Models the server knows unless told otherwise (``llama3.2`` matches ``llama3.2:latest``)."""

DEFAULT_CACHE_SLOTS = 4
"""Prompt-cache slots of the model unless told otherwise (like ``OLLAMA_NUM_PARALLEL``)."""

_VERSION = "0.6.3"
_WORDS = (
    "cache", "channel", "latency", "token", "prompt", "batch", "history", "request",
    "stream", "model", "reply", "metric", "queue", "thread", "event", "buffer",
)  # fmt: skip


class Fault(enum.Enum):
    """Ways the server can be told to fail (an unknown model gives a 404 without one)."""

    SERVER_ERROR = "server_error"
    """Answer ``/api/chat`` with HTTP 500 and ``{"error": ...}``."""
    HANG = "hang"
    """Accept ``/api/chat`` and never answer (until the server stops)."""
    DISCONNECT = "disconnect"
    """Stream a few tokens, then close the connection without finishing the body."""
    ERROR_LINE = "error_line"
    """Stream a few tokens, then an ``{"error": ...}`` line, on HTTP 200 as Ollama does."""
    EMPTY_REPLY = "empty_reply"
    """Answer with no text at all: only the final ``done`` object (a model with nothing to say)."""


def tokenize(text: str) -> list[str]:
    """Split text into the pieces the server streams, one "token" per word with its space."""
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the tokens of a chat request's prompt as the server's template renders it.

    Each message is ChatML's ``<|im_start|>``, its role, a newline, its content's tokens
    (`tokenize`) and ``<|im_end|>``; the prompt ends with the start of the assistant's
    turn (``<|im_start|>``, ``assistant``, a newline), where the model writes its reply.
    """
    tokens: list[str] = []
    for message in messages:
        tokens += ["<|im_start|>", str(message.get("role", "")), "\n"]
        tokens += tokenize(str(message.get("content", "")))
        tokens.append("<|im_end|>")
    tokens += _REPLY_START
    return tokens


_REPLY_START = ("<|im_start|>", "assistant", "\n")


def _common_prefix(first: list[str], second: list[str]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):  # stops at the shorter one
        if a != b:
            break
        length += 1
    return length


def canned_reply(question: str, *, tokens: int = 24, context: str = "") -> str:
    """Return the deterministic reply the server gives to ``question`` (its last user message).

    The same question always gets the same reply, so tests can predict it and identical
    conversations stay identical (which is what makes deduplication observable). A
    ``context`` (the whole conversation, with ``reply_depends_on="conversation"``) changes
    the reply's words after its opening, not its length.
    """
    seed = question.strip() if not context else f"{context}\0{question.strip()}"
    digest = hashlib.sha256(seed.encode()).digest()
    filler = [_WORDS[byte % len(_WORDS)] for byte in digest]
    opening = f"About {question.strip()!r}:".split(" ")
    words = opening + [filler[i % len(filler)] for i in range(max(tokens - len(opening), 1))]
    return " ".join(words) + "."


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _normalize_model(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


@final
class FakeOllama:
    """An Ollama-compatible HTTP server on 127.0.0.1, started and stopped as a context manager.

    Args:
        port: TCP port; 0 (the default) lets the OS choose, then read `port` or `url`.
        models: model names the server knows; others get Ollama's 404 ``model ... not found``.
        time_to_first_token: seconds before the first chunk (or the whole non-streaming reply).
        token_delay: seconds between streamed tokens (also spent, in total, before a
            non-streaming reply).
        reply_tokens: approximate length of each canned reply, in tokens.
        cache_slots: prompt-cache slots of the model (at least 1), see below.
        reply_depends_on: what a canned reply is drawn from: ``"question"`` (the request's
            last user message alone, so the same question always gets the same reply) or
            ``"conversation"`` (every message of the request, as a real model's would: a
            summary request, whose last message is always the same instruction, then gets
            a different summary for a different transcript).

    The timing options and `fault` may be changed while the server runs.

    **Prompt cache.** ``prompt_eval_count`` models what Ollama (and llama.cpp) report with
    their prompt cache, not what this server computes: each of ``cache_slots`` slots holds
    the tokens of the last request it served (`prompt_tokens`, then the reply's tokens).
    A request reuses the slot sharing the longest prefix with its prompt, and only the
    tokens after that prefix count as evaluated (at least one: Ollama always evaluates
    the last token). The request's tokens then replace that slot if the slot held nothing
    but the prefix, else the least recently used slot (as Ollama's multi-user cache
    copies a prefix rather than truncate a slot). One server holds one set of slots for
    all its models, and a busy slot may be reused: a model of the behaviour, simpler than
    Ollama's scheduler.
    `prompt_evals` lists the counts reported.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        models: Iterable[str] = DEFAULT_MODELS,
        time_to_first_token: float = 0.2,
        token_delay: float = 0.02,
        reply_tokens: int = 24,
        cache_slots: int = DEFAULT_CACHE_SLOTS,
        reply_depends_on: Literal["question", "conversation"] = "question",
    ) -> None:
        if time_to_first_token < 0 or token_delay < 0:
            raise ValueError("time_to_first_token and token_delay must be >= 0 seconds")
        if reply_tokens < 1:
            raise ValueError(f"reply_tokens must be >= 1, got {reply_tokens}")
        if cache_slots < 1:
            raise ValueError(f"cache_slots must be >= 1, got {cache_slots}")
        if reply_depends_on not in ("question", "conversation"):
            raise ValueError(
                f"reply_depends_on must be 'question' or 'conversation', got {reply_depends_on!r}"
            )
        self.models = tuple(_normalize_model(model) for model in models)
        self.time_to_first_token = time_to_first_token
        self.token_delay = token_delay
        self.reply_tokens = reply_tokens
        self.reply_depends_on = reply_depends_on
        self.fault: Fault | None = None
        self._requested_port = port
        self._counts: Counter[tuple[str, str | None]] = Counter()
        self._conversations: list[list[dict[str, Any]]] = []
        # The prompt cache: each slot's tokens, least recently used first.
        self._slots: list[list[str]] = [[] for _ in range(cache_slots)]
        self._evals: list[int] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._answering = threading.Event()
        self._answering.set()
        self._pause_after = 0
        self._hangups = 0
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while it runs)."""
        if self._httpd is None:
            raise RuntimeError("FakeOllama is not running; use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, ready for ``ollama.AsyncClient(host=...)``."""
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str | None = None, model: str | None = None) -> int:
        """Return how many requests arrived, optionally only for one path and/or model.

        Every request is counted on arrival, whether it then succeeds, fails or hangs.
        ``model`` matches with or without the ``:latest`` tag.
        """
        wanted = None if model is None else _normalize_model(model)
        with self._lock:
            return sum(
                n
                for (p, m), n in self._counts.items()
                if (path is None or p == path) and (wanted is None or m == wanted)
            )

    def pause(self, *, after_tokens: int = 0) -> None:
        """Hold every ``/api/chat`` request from now on, after counting it, until `resume`.

        Lets a test make sure that concurrent callers have all arrived before any answer.
        With ``after_tokens``, streamed replies are held instead once they have sent that
        many tokens: a test can join a reply in the middle of its stream, deterministically.

        Raises:
            ValueError: If ``after_tokens`` is negative.
        """
        if after_tokens < 0:
            raise ValueError(f"after_tokens must be >= 0, got {after_tokens}")
        self._pause_after = after_tokens
        self._answering.clear()

    def resume(self) -> None:
        """Answer the held requests, and new ones at once again."""
        self._answering.set()

    def hangups(self) -> int:
        """Return how many streamed replies the client closed before their end.

        The server notices when it next writes to the closed connection: a held reply
        (`pause`) only once it is resumed.
        """
        with self._lock:
            return self._hangups

    def conversations(self) -> list[list[dict[str, Any]]]:
        """Return the ``messages`` of every ``/api/chat`` request received, in arrival order.

        Kept for as long as the server object lives (one list per request): meant for tests
        and demos, not for serving a long run.
        """
        with self._lock:
            return [list(messages) for messages in self._conversations]

    def prompt_evals(self) -> list[int]:
        """Return the ``prompt_eval_count`` of every chat request answered, in arrival order.

        A request refused before the model ran (an unknown model, a fault) has none.
        """
        with self._lock:
            return list(self._evals)

    def reset_counts(self) -> None:
        """Forget every request counted, conversation kept and hangup noticed, so far.

        The prompt cache is kept: it is the model's state, not a count.
        """
        with self._lock:
            self._counts.clear()
            self._conversations.clear()
            self._evals.clear()
            self._hangups = 0

    def clear_cache(self) -> None:
        """Empty every prompt-cache slot, as a restarted Ollama would."""
        with self._lock:
            for slot in self._slots:
                slot.clear()

    def start(self) -> FakeOllama:
        """Start serving in a background thread; return ``self``."""
        if self._httpd is not None:
            raise RuntimeError("FakeOllama is already running")
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", self._requested_port), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},  # how fast stop() takes effect
            name=f"fake-ollama-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: release hung requests, close open connections, join the threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        self._answering.set()  # a paused request ends as if resumed, then sees the stop
        httpd.shutdown()
        thread.join()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # Wakes handler threads blocked reading an idle keep-alive connection.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()  # joins the handler threads
        self._httpd = self._thread = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _count(self, path: str, model: str | None) -> None:
        with self._lock:
            self._counts[path, None if model is None else _normalize_model(model)] += 1

    def _hold(self, tokens_sent: int) -> None:
        """Wait here while paused, if this is where `pause` holds replies."""
        if tokens_sent == self._pause_after:
            self._answering.wait()

    def _hung_up(self) -> None:
        with self._lock:
            self._hangups += 1

    def _keep(self, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            self._conversations.append(messages)

    def _evaluate(self, messages: list[dict[str, Any]], reply: list[str]) -> int:
        """Run a prompt through the cache model: the tokens evaluated, the slot updated."""
        prompt = prompt_tokens(messages)
        with self._lock:
            slots = self._slots
            shared = [_common_prefix(slot, prompt) for slot in slots]
            best = max(range(len(slots)), key=lambda index: (shared[index], index))
            evaluated = max(len(prompt) - shared[best], 1)
            # A slot whose whole content is the prompt's prefix grows in place; else the
            # prefix is copied to the least recently used slot, keeping the best one.
            slots.pop(best if shared[best] == len(slots[best]) else 0)
            slots.append([*prompt, *reply, "<|im_end|>"])
            self._evals.append(evaluated)
        return evaluated

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # stop() joins them, after waking the blocked ones
    block_on_close = True
    request_queue_size = 256  # a burst of simultaneous users must not overflow the backlog

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], owner: FakeOllama
    ) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connections is routine, not worth a traceback.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked NDJSON, like Ollama's Go server
    server_version = "FakeOllama"
    server: _Server
    timeout = 30.0  # an idle keep-alive connection is dropped after this many seconds

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, open_=False)
        with contextlib.suppress(OSError):  # the client went away first
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._count(self.path, None)
        if self.path == "/api/version":
            self._send_json(HTTPStatus.OK, {"version": _VERSION})
        elif self.path == "/api/tags":
            self._send_json(HTTPStatus.OK, {"models": [_model_entry(m) for m in owner.models]})
        elif self.path == "/":
            self._send_text(HTTPStatus.OK, "Ollama is running")
        else:
            self._send_text(HTTPStatus.NOT_FOUND, "404 page not found")

    def do_HEAD(self) -> None:
        self.server.owner._count(self.path, None)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            owner._count(self.path, None)
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": f"invalid JSON: {error}"})
            return
        model = body.get("model") if isinstance(body, dict) else None
        owner._count(self.path, model if isinstance(model, str) else None)
        if self.path != "/api/chat":
            self._send_text(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        self._chat(body)

    def _chat(self, body: dict[str, Any]) -> None:
        owner = self.server.owner
        model = body.get("model")
        messages = body.get("messages") or []
        owner._keep(messages)
        owner._hold(0)
        if not isinstance(model, str) or not model:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "model is required"})
            return
        if _normalize_model(model) not in owner.models:
            error = f"model '{model}' not found, try pulling it first"
            self._send_json(HTTPStatus.NOT_FOUND, {"error": error})
            return
        fault = owner.fault
        if fault is Fault.SERVER_ERROR:
            error = "llama runner process has terminated: exit status 2"
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": error})
            return
        if fault is Fault.HANG:
            owner._stopping.wait()
            self.close_connection = True
            return
        question = next(
            (str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        context = json.dumps(messages) if owner.reply_depends_on == "conversation" else ""
        tokens = tokenize(canned_reply(question, tokens=owner.reply_tokens, context=context))
        if fault is Fault.EMPTY_REPLY:
            tokens = []
        evaluated = owner._evaluate(messages, tokens)
        if body.get("stream", True):
            self._stream(model, tokens, evaluated, fault)
        else:
            self._reply(model, tokens, evaluated, fault)

    def _reply(
        self, model: str, tokens: list[str], prompt_tokens: int, fault: Fault | None
    ) -> None:
        owner = self.server.owner
        started = time.perf_counter_ns()
        time.sleep(owner.time_to_first_token)
        prompt_done = time.perf_counter_ns()
        time.sleep(owner.token_delay * len(tokens))
        if fault in (Fault.DISCONNECT, Fault.ERROR_LINE):
            # Non-streaming has no "middle": the connection just drops before an answer.
            self.close_connection = True
            return
        message = {"role": "assistant", "content": "".join(tokens)}
        final = _final_stats(started, prompt_done, prompt_tokens, len(tokens))
        self._send_json(
            HTTPStatus.OK, {"model": model, "created_at": _now_iso(), "message": message, **final}
        )

    def _stream(
        self, model: str, tokens: list[str], prompt_tokens: int, fault: Fault | None
    ) -> None:
        owner = self.server.owner
        started = time.perf_counter_ns()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        time.sleep(owner.time_to_first_token)
        prompt_done = time.perf_counter_ns()
        broken_after = len(tokens) // 2 if fault in (Fault.DISCONNECT, Fault.ERROR_LINE) else None
        try:
            for index, token in enumerate(tokens):
                if index == broken_after:
                    break
                if index:
                    owner._hold(index)
                    time.sleep(owner.token_delay)
                message = {"role": "assistant", "content": token}
                self._chunk(
                    {"model": model, "created_at": _now_iso(), "message": message, "done": False}
                )
            if fault is Fault.DISCONNECT:
                self.close_connection = True
                return  # no terminating chunk: the body is cut off mid-stream
            if fault is Fault.ERROR_LINE:
                self._chunk(
                    {"error": "an error was encountered while running the model: unexpected EOF"}
                )
            else:
                message = {"role": "assistant", "content": ""}
                final = _final_stats(started, prompt_done, prompt_tokens, len(tokens))
                self._chunk({"model": model, "created_at": _now_iso(), "message": message, **final})
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            # The client hung up (a timeout or a cancelled caller); nothing left to send.
            owner._hung_up()
            self.close_connection = True

    def _chunk(self, obj: Mapping[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_json(self, status: HTTPStatus, obj: Mapping[str, Any]) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _send_text(self, status: HTTPStatus, text: str) -> None:
        self._send_bytes(status, text.encode(), "text/plain; charset=utf-8")

    def _send_bytes(self, status: HTTPStatus, data: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


def _final_stats(
    started: int, prompt_done: int, prompt_tokens: int, eval_tokens: int
) -> dict[str, Any]:
    """The last object of a reply: ``done`` and Ollama's statistics, durations in nanoseconds."""
    finished = time.perf_counter_ns()
    load = min(5_000_000, (prompt_done - started) // 4)
    return {
        "done": True,
        "done_reason": "stop",
        "total_duration": finished - started,
        "load_duration": load,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_done - started - load,
        "eval_count": eval_tokens,
        "eval_duration": max(finished - prompt_done, 1),
    }


def _model_entry(name: str) -> dict[str, Any]:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": "2026-01-01T00:00:00Z",
        "size": 2_019_393_189,
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }
