"""A small Telegram Bot API server on 127.0.0.1, for testing the Telegram example bot.

It answers ``POST /bot<token>/<method>`` the way api.telegram.org does (a JSON object with
``ok`` and ``result``, or ``ok: false`` with ``error_code`` and ``description``) for the
methods aiogram's polling and the bot use: ``getMe``, ``getUpdates`` (long polling: it waits
up to ``timeout`` seconds for an update past ``offset``), ``sendMessage``,
``editMessageText``, ``sendChatAction``, ``setMyCommands``, ``deleteWebhook`` and ``close``.
A test pushes users' messages with `FakeTelegram.push`, reads what the bot shows with
`FakeTelegram.texts` and every call it made with `FakeTelegram.calls`, and makes a method
answer HTTP 429 with ``parameters.retry_after`` the next few times with
`FakeTelegram.rate_limit`, as Telegram's flood control does.

Only the standard library: a ``ThreadingHTTPServer`` in a background thread, so it works
whatever event loop the client runs on. aiogram sends form-encoded bodies (JSON-encoded
values for nested objects); JSON bodies are read too.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, final
from urllib.parse import parse_qsl

__all__ = ["BOT_ID", "BOT_USERNAME", "TOKEN", "Call", "FakeTelegram"]

TOKEN = "123456:TEST-token_for-the-fake-bot-api"
"""The token the server accepts; any other gets 401 Unauthorized."""
BOT_ID = 123456
BOT_USERNAME = "botperf_test_bot"


@final
@dataclass(frozen=True)
class Call:
    """One request the server answered."""

    method: str
    params: dict[str, Any]
    at: float
    """``time.monotonic()`` when it arrived."""
    status: int = 200


@dataclass
class _Sent:
    chat_id: int
    message_id: int
    text: str
    reply_to: int | None
    history: list[str] = field(default_factory=list)


@final
class FakeTelegram:
    """A Bot API server on 127.0.0.1, started and stopped as a context manager.

    Args:
        token: The bot token it accepts.
    """

    def __init__(self, *, token: str = TOKEN) -> None:
        self.token = token
        self._lock = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1000
        self._sent: list[_Sent] = []
        self._calls: list[Call] = []
        self._limits: dict[str, list[int]] = {}
        self._stopping = False
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL, for ``TelegramAPIServer.from_base``."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeTelegram:
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-telegram", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()  # long polls answer at once
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # What a test does.

    def push(
        self,
        text: str,
        *,
        chat_id: int = 7,
        chat_type: str = "private",
        user_id: int = 7,
        first_name: str = "Ann",
        mention: bool = False,
        reply_to: int | None = None,
    ) -> int:
        """Deliver a user's message to the bot's next ``getUpdates``; its message id.

        ``mention`` prefixes ``@botperf_test_bot`` with its ``mention`` entity, as a
        Telegram client does; ``reply_to`` makes it a reply to that message (of the bot's,
        as `sent_ids` lists them). A ``/command`` gets its ``bot_command`` entity.
        """
        entities: list[dict[str, Any]] = []
        if mention:
            text = f"@{BOT_USERNAME} {text}"
            entities.append({"type": "mention", "offset": 0, "length": len(BOT_USERNAME) + 1})
        elif text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command)})
        with self._lock:
            message_id = self._next_message
            self._next_message += 1
            message: dict[str, Any] = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": _chat(chat_id, chat_type),
                "from": {"id": user_id, "is_bot": False, "first_name": first_name},
                "text": text,
            }
            if entities:
                message["entities"] = entities
            if reply_to is not None:
                message["reply_to_message"] = self._message_json(self._find(reply_to))
            self._updates.append({"update_id": self._next_update, "message": message})
            self._next_update += 1
            self._lock.notify_all()
        return message_id

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 and ``retry_after``."""
        with self._lock:
            self._limits[method] = [times, retry_after]

    def calls(self, method: str | None = None) -> list[Call]:
        """The requests answered so far (of ``method`` only, if given), in order."""
        with self._lock:
            return [call for call in self._calls if method is None or call.method == method]

    def texts(self, chat_id: int) -> list[str]:
        """What the bot's messages in ``chat_id`` show now, in the order it sent them."""
        with self._lock:
            return [sent.text for sent in self._sent if sent.chat_id == chat_id]

    def sent_ids(self, chat_id: int) -> list[int]:
        """The ids of the bot's messages in ``chat_id``, in order."""
        with self._lock:
            return [sent.message_id for sent in self._sent if sent.chat_id == chat_id]

    def replied_to(self, chat_id: int) -> list[int | None]:
        """For each of the bot's messages in ``chat_id``: the message it replies to."""
        with self._lock:
            return [sent.reply_to for sent in self._sent if sent.chat_id == chat_id]

    def shown(self, chat_id: int) -> list[list[str]]:
        """Every text each of the bot's messages in ``chat_id`` showed, sent then edited."""
        with self._lock:
            return [list(sent.history) for sent in self._sent if sent.chat_id == chat_id]

    # The API.

    def answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one API call (runs in the server's threads)."""
        now = time.monotonic()
        if method == "getUpdates":
            return self._get_updates(params, now)
        with self._lock:
            limit = self._limits.get(method)
            if limit is not None and limit[0] > 0:
                limit[0] -= 1
                self._calls.append(Call(method, params, now, status=429))
                return 429, {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {limit[1]}",
                    "parameters": {"retry_after": limit[1]},
                }
            self._calls.append(Call(method, params, now))
            return self._method(method, params)

    def _method(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "getMe":
            return 200, _ok(
                {
                    "id": BOT_ID,
                    "is_bot": True,
                    "first_name": "botperf test bot",
                    "username": BOT_USERNAME,
                    "can_join_groups": True,
                    "can_read_all_group_messages": False,
                    "supports_inline_queries": False,
                }
            )
        if method in ("sendChatAction", "setMyCommands", "deleteWebhook", "close"):
            return 200, _ok(True)
        if method == "sendMessage":
            text = str(params.get("text", ""))
            if not text.strip():
                return _bad_request("message text is empty")
            if len(text) > 4096:
                return _bad_request("message is too long")
            reply = _json_param(params.get("reply_parameters"))
            sent = _Sent(
                chat_id=int(params["chat_id"]),
                message_id=self._next_message,
                text=text,
                reply_to=None if not reply else int(reply["message_id"]),
                history=[text],
            )
            self._next_message += 1
            self._sent.append(sent)
            return 200, _ok(self._message_json(sent))
        if method == "editMessageText":
            text = str(params.get("text", ""))
            try:
                sent = self._find(int(params["message_id"]), int(params["chat_id"]))
            except (KeyError, LookupError):
                return _bad_request("message to edit not found")
            if not text.strip():
                return _bad_request("message text is empty")
            if len(text) > 4096:
                return _bad_request("MESSAGE_TOO_LONG")
            if text == sent.text:
                return _bad_request(
                    "message is not modified: specified new message content and reply markup "
                    "are exactly the same as a current content and reply markup of the message"
                )
            sent.text = text
            sent.history.append(text)
            return 200, _ok(self._message_json(sent))
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def _get_updates(self, params: dict[str, Any], now: float) -> tuple[int, dict[str, Any]]:
        offset = int(params.get("offset", 0) or 0)
        timeout = float(params.get("timeout", 0) or 0)
        deadline = now + timeout
        with self._lock:
            self._calls.append(Call("getUpdates", params, now))
            if offset:  # updates before the offset are confirmed: Telegram forgets them
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return 200, _ok(list(self._updates[:100]))

    def _find(self, message_id: int, chat_id: int | None = None) -> _Sent:
        for sent in self._sent:
            if sent.message_id == message_id and chat_id in (None, sent.chat_id):
                return sent
        raise LookupError(message_id)

    def _message_json(self, sent: _Sent) -> dict[str, Any]:
        return {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": _chat(sent.chat_id, "private" if sent.chat_id > 0 else "group"),
            "from": {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "botperf test bot",
                "username": BOT_USERNAME,
            },
            "text": sent.text,
        }


def _chat(chat_id: int, chat_type: str) -> dict[str, Any]:
    if chat_type == "private":
        return {"id": chat_id, "type": "private", "first_name": "Ann"}
    return {"id": chat_id, "type": chat_type, "title": "a test group"}


def _ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def _bad_request(description: str) -> tuple[int, dict[str, Any]]:
    return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}


def _json_param(value: Any) -> Any:
    """A nested object as aiogram sends it in a form: JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeTelegram) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client gone mid-answer (a long poll cancelled when the bot stops) is normal.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read calls(), not a log

    def do_POST(self) -> None:
        self._dispatch(self._body())

    def do_GET(self) -> None:
        self._dispatch({})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length).decode() if length else ""
        if self.headers.get_content_type() == "application/json":
            loaded = json.loads(data or "{}")
            return dict(loaded) if isinstance(loaded, Mapping) else {}
        return dict(parse_qsl(data, keep_blank_values=True))

    def _dispatch(self, params: dict[str, Any]) -> None:
        fake = self.server.fake
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            status, body = 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        elif parts[0][3:] != fake.token:
            status, body = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        else:
            status, body = fake.answer(parts[1], params)
        data = json.dumps(body).encode()
        self.send_response(HTTPStatus(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
