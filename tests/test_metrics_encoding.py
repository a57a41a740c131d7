from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botperf import InvalidOptionError
from botperf._encoding import encode_batch, resolve_encoder

Encoder = Literal["json", "orjson"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


class Key(enum.Enum):
    RED = "red"
    ONE = 1


class StrKey(str, enum.Enum):
    BLUE = "blue"


# Keys JSON has no form for: enums and UUIDs are written as their value and string,
# a dict with a datetime key makes its field a repr() string.
odd_keys = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([*Key, *StrKey])
    | st.uuids()
    | st.datetimes()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=3) | odd_keys, children, max_size=4)
    ),
    max_leaves=12,
)
events = st.dictionaries(st.text(), json_values, max_size=5)


def key_as_written(key: object) -> object:
    if isinstance(key, enum.Enum):
        return key_as_written(key.value)
    if isinstance(key, uuid.UUID):
        return str(key)
    return key


def has_unwritable_key(value: object) -> bool:
    if isinstance(value, list):
        return any(map(has_unwritable_key, value))
    if isinstance(value, dict):
        return any(
            not isinstance(key_as_written(key), (str, int)) or has_unwritable_key(item)
            for key, item in value.items()
        )
    return False


def as_written(value: object) -> object:
    """The model: what both encoders promise to write for a value without odd keys."""
    if isinstance(value, list):
        return [as_written(item) for item in value]
    if isinstance(value, dict):
        return {str(key_as_written(key)): as_written(item) for key, item in value.items()}
    return value


def event_as_written(event: dict[str, Any]) -> dict[str, Any]:
    return {
        name: repr(value) if has_unwritable_key(value) else as_written(value)
        for name, value in event.items()
    }


@pytest.fixture(params=["json", "orjson"])
def encoder(request: pytest.FixtureRequest) -> Encoder:
    name: Encoder = request.param
    return name


def decode(data: bytes) -> list[dict[str, Any]]:
    assert data.endswith(b"\n")
    # Split on b"\n" only, as read_metrics does: orjson leaves U+0085 and U+2028 raw.
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


def one_value(value: object, encoder: Encoder) -> tuple[object, int]:
    batch = encode_batch([{"event": "x", "value": value}], encoder)
    [event] = decode(batch.data)
    return event["value"], batch.repr_values


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(events, max_size=10))
def test_both_encoders_write_the_same_events(batch: list[dict[str, Any]]) -> None:
    with_json, with_orjson = encode_batch(batch, "json"), encode_batch(batch, "orjson")
    from_json = decode(with_json.data) if batch else []
    from_orjson = decode(with_orjson.data) if batch else []
    assert from_json == from_orjson == [event_as_written(event) for event in batch]
    assert with_json.repr_values == with_orjson.repr_values


def test_enum_and_uuid_dict_keys_are_written_as_their_value_and_string(
    encoder: Encoder,
) -> None:
    value = {Key.RED: 1, Key.ONE: 2, StrKey.BLUE: 3, uuid.UUID(int=7): 4}
    assert one_value(value, encoder) == ({"red": 1, "1": 2, "blue": 3, str(uuid.UUID(int=7)): 4}, 0)


def test_a_dict_with_datetime_keys_is_written_as_its_repr(encoder: Encoder) -> None:
    value = {datetime.datetime(2024, 5, 1): 1}
    assert one_value(value, encoder) == (repr(value), 1)


def test_one_line_per_event_each_a_compact_object(encoder: Encoder) -> None:
    data = encode_batch([{"event": "a", "n": 1}, {"event": "b", "n": 2}], encoder).data
    assert data == b'{"event":"a","n":1}\n{"event":"b","n":2}\n'


def test_a_value_json_cannot_hold_is_written_as_its_repr_and_counted(encoder: Encoder) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque 7>"

    assert one_value(Opaque(), encoder) == ("<Opaque 7>", 1)


def test_a_value_whose_repr_raises_is_written_as_unrepresentable_and_counted(
    encoder: Encoder,
) -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("repr failed")

    assert one_value(Weird(), encoder) == ("<unrepresentable Weird>", 1)
    assert one_value({"deep": [Weird()]}, encoder) == ({"deep": ["<unrepresentable Weird>"]}, 1)


def test_nested_unencodable_values_are_each_counted(encoder: Encoder) -> None:
    value, repr_values = one_value([object(), {"deep": object()}], encoder)
    assert repr_values == 2
    assert isinstance(value, list)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_written_as_null(encoder: Encoder, value: float) -> None:
    assert one_value({"nested": [value]}, encoder) == ({"nested": [None]}, 0)


def test_an_enum_is_written_as_its_value(encoder: Encoder) -> None:
    class Color(enum.Enum):
        RED = "red"

    assert one_value(Color.RED, encoder) == ("red", 0)


def test_a_uuid_is_written_as_its_string(encoder: Encoder) -> None:
    value = uuid.UUID(int=7)
    assert one_value(value, encoder) == (str(value), 0)


@pytest.mark.parametrize(
    "value", [datetime.date(2024, 5, 1), dataclasses.make_dataclass("Point", ["x"])(1)]
)
def test_dates_and_dataclasses_are_written_as_their_repr(encoder: Encoder, value: object) -> None:
    assert one_value(value, encoder) == (repr(value), 1)


def test_an_int_beyond_64_bits_is_written_exactly(encoder: Encoder) -> None:
    assert one_value(2**100, encoder) == (2**100, 0)


def test_a_lone_surrogate_round_trips(encoder: Encoder) -> None:
    assert one_value("a\ud800b", encoder) == ("a\ud800b", 0)


def test_a_cyclic_value_is_written_as_its_repr(encoder: Encoder) -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    assert one_value(cycle, encoder) == ("[[...]]", 1)


def test_scalar_dict_keys_become_strings(encoder: Encoder) -> None:
    assert one_value({1: "a", None: "b"}, encoder) == ({"1": "a", "null": "b"}, 0)


def test_a_dict_with_tuple_keys_is_written_as_its_repr(encoder: Encoder) -> None:
    assert one_value({(1, 2): "a"}, encoder) == ("{(1, 2): 'a'}", 1)


def test_one_odd_event_does_not_change_the_others(encoder: Encoder) -> None:
    batch = [{"event": "a"}, {"event": "b", "bad": float("nan"), "ok": 1}, {"event": "c"}]
    assert decode(encode_batch(batch, encoder).data) == [
        {"event": "a"},
        {"event": "b", "bad": None, "ok": 1},
        {"event": "c"},
    ]


def test_auto_picks_orjson_when_it_is_importable() -> None:
    assert resolve_encoder("auto", owner="Sink") == "orjson"
    assert resolve_encoder("json", owner="Sink") == "json"


def test_an_unknown_encoder_is_an_invalid_option_naming_its_owner() -> None:
    with pytest.raises(InvalidOptionError, match=r"Sink\(encoder='yaml'\): encoder must be one of"):
        resolve_encoder("yaml", owner="Sink")
