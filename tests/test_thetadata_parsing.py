"""ThetaData's wire formats, pure: recorded stream frames and REST rows to records, with no
socket (the shapes are the Terminal's documented ones, as the emulator sends them)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
import pytest

from kit.adapters.thetadata.parsing import (
    decode_frame,
    format_timestamp,
    ms_of_day_to_ns,
    parse_date,
    parse_rows,
    parse_timestamp,
    quote_row,
)
from kit.core.clock import to_ns
from kit.core.model import Contract

QUOTE = (
    b'{"header":{"type":"QUOTE","status":"CONNECTED"},"contract":{"security_type":"OPTION",'
    b'"root":"SPXW","expiration":20240312,"strike":5050000,"right":"C"},"quote":{'
    b'"ms_of_day":36000123,"bid_size":12,"bid_exchange":5,"bid":2.05,"bid_condition":50,'
    b'"ask_size":9,"ask_exchange":5,"ask":2.15,"ask_condition":50,"date":20240312}}'
)
STATUS = b'{"header":{"type":"STATUS","status":"CONNECTED"}}'
ACK = b'{"header":{"type":"REQ_RESPONSE","response":"MAX_STREAMS_REACHED","req_id":7}}'
CSV = (
    "timestamp,symbol,expiration,strike,right,bid_size,bid_exchange,bid,bid_condition,"
    "ask_size,ask_exchange,ask,ask_condition\n"
    "2024-03-12T10:00:00.123,SPXW,2024-03-12,5050.000,CALL,12,5,2.05,50,9,5,2.15,50\n"
    "2024-03-12T10:00:00.500,SPXW,2024-03-12,5050.000,CALL,12,5,2.20,50,9,5,2.15,50\n"
)


def test_a_stream_quote_frame_decodes_to_its_fields_in_new_york_time() -> None:
    f = decode_frame(QUOTE)
    assert (f.header.type, f.contract.root, f.contract.strike, f.contract.right) == (
        "QUOTE", "SPXW", 5050000, "C")  # fmt: skip
    ts = ms_of_day_to_ns(f.quote.date, f.quote.ms_of_day)
    # 10:00:00.123 New York on 2024-03-12 (EDT, UTC-4) is 14:00:00.123 UTC
    assert ts == to_ns(datetime(2024, 3, 12, 14, 0, 0, 123000, tzinfo=UTC))
    assert decode_frame(STATUS).header.status == "CONNECTED"
    ack = decode_frame(ACK).header
    assert (ack.response, ack.req_id) == ("MAX_STREAMS_REACHED", 7)


@pytest.mark.parametrize("frame", [b"{not json", b'{"header": 5}', b'{"contract": {}}'])
def test_malformed_frames_raise_decode_or_validation_errors(frame: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_frame(frame)


def test_rest_rows_become_quotes_and_a_crossed_row_is_skipped(caplog) -> None:
    rows = parse_rows(CSV, "csv")
    assert len(rows) == 2
    good, crossed = (quote_row(r) for r in rows)
    assert good is not None and good.contract == Contract("SPXW", date(2024, 3, 12), 5050.0, "C")
    assert (good.bid, good.ask, good.bid_size) == (2.05, 2.15, 12.0)
    assert format_timestamp(good.ts_ns) == "2024-03-12T10:00:00.123"
    assert crossed is None and "skipping bad quote row" in caplog.text  # bid 2.20 > ask 2.15
    assert parse_rows("", "csv") == [] and parse_rows('{"a": 1}\n', "ndjson") == [{"a": 1}]


def test_dates_and_timestamps_round_trip() -> None:
    assert parse_date("20240312") == parse_date("2024-03-12") == date(2024, 3, 12)
    with pytest.raises(ValueError, match="bad date"):
        parse_date("2024-3-12")
    ts = parse_timestamp("2024-11-29T13:15:00.250")  # an early-close day, EST
    assert format_timestamp(ts) == "2024-11-29T13:15:00.250"
