"""Instrument symbols in the venues' own formats.

:func:`parse_symbol` turns a venue symbol into an :class:`InstrumentSpec`, and
:func:`format_symbol` writes a spec back in a venue's format. For every symbol
that parses, formatting it again for the same venue gives back the exact same
string.

Supported formats
-----------------

=========  ================================  =========  =====  ========  ==========
Venue      Example                           Kind       Quote  Settle    Margin
=========  ================================  =========  =====  ========  ==========
deribit    ``BTC-PERPETUAL``                 perpetual  USD    BTC       inverse
deribit    ``BTC-27DEC24``                   future     USD    BTC       inverse
deribit    ``BTC-27DEC24-100000-C``          option     USD    BTC       inverse
deribit    ``BTC_USDC-PERPETUAL``            perpetual  USDC   USDC      linear
deribit    ``SOL_USDC-27DEC24-150-C``        option     USDC   USDC      linear
deribit    ``XRP_USDC-30AUG24-0d625-C``      option     USDC   USDC      linear
deribit    ``BTC_USDC``                      spot       USDC   USDC      --
okx        ``BTC-USDT``                      spot       USDT   USDT      --
okx        ``BTC-USD-SWAP``                  perpetual  USD    BTC       inverse
okx        ``BTC-USDT-SWAP``                 perpetual  USDT   USDT      linear
okx        ``BTC-USD-241227``                future     USD    BTC       inverse
okx        ``BTC-USDT-241227``               future     USDT   USDT      linear
okx        ``BTC-USD-241227-100000-C``       option     USD    BTC       inverse
binance    ``BTC-241227-100000-C``           option     USDT   USDT      linear
ccxt       ``BTC/USDT``                      spot       USDT   USDT      --
ccxt       ``BTC/USDT:USDT``                 perpetual  USDT   USDT      linear
ccxt       ``BTC/USD:BTC``                   perpetual  USD    BTC       inverse
ccxt       ``BTC/USDT:USDT-241227``          future     USDT   USDT      linear
ccxt       ``BTC/USD:BTC-241227-100000-C``   option     USD    BTC       inverse
=========  ================================  =========  =====  ========  ==========

Venue rules:

* **Deribit** -- ``BASE-...`` is coin-settled (inverse: quote USD, settle
  BASE); ``BASE_QUOTE-...`` is linear (quote and settle QUOTE); ``BASE_QUOTE``
  alone is a spot pair. Expiries are ``DMMMYY`` with no leading zero on the day
  (``5JAN25``). Fractional strikes use ``d`` as the decimal mark (``0d625`` is
  0.625).
* **OKX** -- ``BASE-QUOTE`` spot, ``BASE-QUOTE-SWAP`` perpetual,
  ``BASE-QUOTE-YYMMDD`` future, ``BASE-QUOTE-YYMMDD-STRIKE-C|P`` option. For
  derivatives, quote ``USD`` means coin-margined (inverse, settle BASE); any
  other quote is linear and settles in that quote currency.
* **Binance options** -- ``BASE-YYMMDD-STRIKE-C|P``: European, quoted and
  settled in USDT (linear). No other Binance symbols are supported.
* **ccxt unified** -- ``BASE/QUOTE`` spot, ``BASE/QUOTE:SETTLE`` perpetual,
  ``BASE/QUOTE:SETTLE-YYMMDD`` future,
  ``BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C|P`` option. All currencies are explicit.

Fractional strikes are written with ``.`` by OKX, Binance and ccxt. Integer
strikes are written without decimals (``100000``).

Format detection
----------------

With ``venue=None``, :func:`parse_symbol` picks the format from the symbol's
shape: ``/`` means ccxt; ``_`` in the first field, ``-PERPETUAL`` or a second
field that starts with a digit and contains letters (``27DEC24``) means
Deribit; an all-digit second field (``241227``) means Binance; a second field
that starts with a letter (a quote currency, ``-USDT-``) or a trailing
``-SWAP`` means OKX. The grammars do not overlap, so no valid symbol is
ambiguous; should several candidates ever parse to different instruments, a
:class:`ValueError` lists them. An OKX quote currency that starts with a digit
is not detected: pass ``venue="okx"``. A typo such as ``BTC-27DEX24`` is
therefore reported as a bad Deribit date, never read as an OKX spot pair.

Expiry time
-----------

Symbols carry only the expiry date. Deribit, OKX and Binance options all expire
at **08:00 UTC** on that date, so parsed expiries are
``datetime(Y, M, D, 8, 0, tzinfo=timezone.utc)`` (see :data:`EXPIRY_TIME_UTC`).
ccxt symbols are read the same way. :func:`format_symbol` refuses an expiry at
any other time of day, because no symbol could express it.

Strictness
----------

Symbols must be written exactly as the venues write them. They are
**case-sensitive and upper-case** (only Deribit's decimal ``d`` inside a strike
is lower-case). Lower-case input is rejected with a hint, not normalised,
because the venues' APIs reject it too. Leading or trailing whitespace is
rejected. Forms that the venue would never print are rejected too, such as a
leading zero on a Deribit day (``05JAN25``) or a strike like ``100000.0``, so
that parsing and formatting are exact inverses.

Every malformed symbol raises :class:`ValueError` with a message that says what
is wrong and quotes the symbol, for example::

    invalid expiry '32DEC24' in 'BTC-32DEC24-100000-C': day 32 out of range for DEC 2024
"""

from __future__ import annotations

import calendar
import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

__all__ = [
    "EXPIRY_TIME_UTC",
    "VENUES",
    "InstrumentKind",
    "InstrumentSpec",
    "format_symbol",
    "parse_symbol",
]

# datetime.UTC would need Python 3.11.
_UTC = timezone.utc

#: Time of day (UTC) at which Deribit, OKX and Binance options expire.
EXPIRY_TIME_UTC = time(8, 0, tzinfo=_UTC)

#: Venue names accepted by :func:`parse_symbol` and :func:`format_symbol`.
VENUES: tuple[str, ...] = ("deribit", "okx", "binance", "ccxt")

_MONTHS = (
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
    "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
)  # fmt: skip
_OPTION_TYPES = ("C", "P")
_CURRENCY_RE = re.compile(r"[A-Z0-9]+")
_RESERVED_WORDS = frozenset({"PERPETUAL", "SWAP"})
_DERIBIT_DATE_RE = re.compile(r"(\d{1,2})([A-Z]{3})(\d{2})")
_YYMMDD_RE = re.compile(r"\d{6}")
_STRIKE_RE = {".": re.compile(r"\d+(?:\.\d+)?"), "d": re.compile(r"\d+(?:d\d+)?")}
_DERIBIT_STRIKE_DECIMAL_RE = re.compile(r"(?<=\d)d(?=\d)")


class InstrumentKind(enum.Enum):
    """What kind of instrument a symbol names."""

    SPOT = "spot"
    PERPETUAL = "perpetual"
    FUTURE = "future"
    OPTION = "option"


@dataclass(frozen=True)
class InstrumentSpec:
    """A venue-independent description of an instrument.

    Attributes:
        kind: spot, perpetual, future or option.
        base: the base (underlying) currency, e.g. ``"BTC"``.
        quote: the currency prices are quoted in, e.g. ``"USD"``, ``"USDT"``.
        settle: the currency margin and P&L are settled in; equal to ``base``
            for coin-settled (inverse) contracts. For spot it must equal
            ``quote``.
        expiry: expiry as a timezone-aware UTC ``datetime`` for futures and
            options (any aware datetime is converted to UTC); ``None`` for spot
            and perpetuals.
        strike: positive finite strike for options (ints are converted to
            float); ``None`` otherwise.
        option_type: ``"C"`` or ``"P"`` for options; ``None`` otherwise.

    Construction validates every field and raises :class:`ValueError` (or
    :class:`TypeError` for a wrong type) naming the offending field.
    """

    kind: InstrumentKind
    base: str
    quote: str
    settle: str
    expiry: datetime | None = None
    strike: float | None = None
    option_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, InstrumentKind):
            raise TypeError(f"kind must be an InstrumentKind, got {self.kind!r}")
        for role in ("base", "quote", "settle"):
            _check_currency(getattr(self, role), role)
        if self.base == self.quote:
            raise ValueError(f"base and quote currency are both {self.base!r}")
        if self.kind is InstrumentKind.SPOT and self.settle != self.quote:
            raise ValueError(
                f"spot settle currency must equal the quote currency "
                f"{self.quote!r}, got {self.settle!r}"
            )

        dated = self.kind in (InstrumentKind.FUTURE, InstrumentKind.OPTION)
        if dated:
            if self.expiry is None:
                raise ValueError(f"a {self.kind.value} needs an expiry")
            if not isinstance(self.expiry, datetime):
                raise TypeError(f"expiry must be a datetime, got {self.expiry!r}")
            if self.expiry.tzinfo is None or self.expiry.utcoffset() is None:
                raise ValueError(f"expiry must be timezone-aware, got {self.expiry!r}")
            object.__setattr__(self, "expiry", self.expiry.astimezone(_UTC))
        elif self.expiry is not None:
            raise ValueError(f"a {self.kind.value} has no expiry, got {self.expiry!r}")

        if self.kind is InstrumentKind.OPTION:
            strike = self.strike
            if strike is None:
                raise ValueError("an option needs a strike")
            if isinstance(strike, bool) or not isinstance(strike, (int, float)):
                raise TypeError(f"strike must be a number, got {strike!r}")
            strike = float(strike)
            if not math.isfinite(strike):
                raise ValueError(f"strike must be finite, got {strike!r}")
            if strike <= 0:
                raise ValueError(f"strike must be positive, got {strike!r}")
            object.__setattr__(self, "strike", strike)
            if self.option_type not in _OPTION_TYPES:
                raise ValueError(f"unknown option type {self.option_type!r}: expected 'C' or 'P'")
        else:
            if self.strike is not None:
                raise ValueError(f"a {self.kind.value} has no strike, got {self.strike!r}")
            if self.option_type is not None:
                raise ValueError(
                    f"a {self.kind.value} has no option type, got {self.option_type!r}"
                )

    @property
    def inverse(self) -> bool:
        """True for coin-settled contracts, i.e. when ``settle == base``."""
        return self.settle == self.base

    @property
    def is_call(self) -> bool:
        """True for a call option; False for puts and for non-options."""
        return self.option_type == "C"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict; :meth:`from_dict` reads it back.

        ``kind`` is the enum's value (``"option"``) and ``expiry`` an ISO 8601
        string with a ``+00:00`` offset, or ``None``.
        """
        return {
            "kind": self.kind.value,
            "base": self.base,
            "quote": self.quote,
            "settle": self.settle,
            "expiry": None if self.expiry is None else self.expiry.isoformat(),
            "strike": self.strike,
            "option_type": self.option_type,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstrumentSpec:
        """Build a spec from a dict as written by :meth:`to_dict`.

        ``kind``, ``base``, ``quote`` and ``settle`` are required; ``expiry``,
        ``strike`` and ``option_type`` default to ``None``. ``kind`` may be an
        :class:`InstrumentKind` or its value; ``expiry`` an aware ``datetime``
        or an ISO 8601 string with an offset (``Z`` is accepted). Unknown keys
        are a :class:`ValueError`.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a mapping, got {type(data).__name__}")
        required = ("kind", "base", "quote", "settle")
        optional = ("expiry", "strike", "option_type")
        missing = [key for key in required if key not in data]
        if missing:
            raise ValueError(f"missing key(s): {', '.join(missing)}")
        unknown = sorted(str(key) for key in data if key not in required + optional)
        if unknown:
            raise ValueError(f"unknown key(s): {', '.join(unknown)}")

        kind = data["kind"]
        if not isinstance(kind, InstrumentKind):
            try:
                kind = InstrumentKind(kind)
            except ValueError:
                names = ", ".join(repr(k.value) for k in InstrumentKind)
                raise ValueError(
                    f"unknown instrument kind {kind!r}: expected one of {names}"
                ) from None

        expiry = data.get("expiry")
        if isinstance(expiry, str):
            text = expiry[:-1] + "+00:00" if expiry.endswith("Z") else expiry
            try:
                expiry = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"invalid expiry {expiry!r}: not ISO 8601") from None

        return cls(
            kind=kind,
            base=data["base"],
            quote=data["quote"],
            settle=data["settle"],
            expiry=expiry,
            strike=data.get("strike"),
            option_type=data.get("option_type"),
        )


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def parse_symbol(symbol: str, venue: str | None = None) -> InstrumentSpec:
    """Parse a venue symbol into an :class:`InstrumentSpec`.

    Args:
        symbol: the symbol exactly as the venue writes it, e.g.
            ``"BTC-27DEC24-100000-C"``.
        venue: ``"deribit"``, ``"okx"``, ``"binance"`` or ``"ccxt"``; with
            ``None`` the format is detected from the symbol's shape (``/`` means
            ccxt, ``_``/``PERPETUAL``/``DMMMYY`` mean Deribit, a quote leg such
            as ``-USDT-`` means OKX, ``BASE-YYMMDD-...`` means Binance; see
            "Format detection" in the module docstring).

    Raises:
        ValueError: the symbol is malformed (the message says which part and
            why), the venue is unknown, or, with ``venue=None``, the symbol
            fits no format or validly fits several with different meanings (the
            message lists the candidates; pass ``venue`` to choose). The
            supported formats do not overlap, so the last case is a safeguard.
        TypeError: ``symbol`` is not a string.
    """
    if venue is not None:
        _check_venue(venue)
    if not isinstance(symbol, str):
        raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
    if not symbol:
        raise ValueError("empty symbol")
    if symbol != symbol.strip():
        raise ValueError(f"symbol {symbol!r} has leading or trailing whitespace")
    # Deribit writes a decimal strike as e.g. 0d625; every other letter is upper-case.
    if any(ch.islower() for ch in _DERIBIT_STRIKE_DECIMAL_RE.sub("", symbol)):
        hint = re.sub(r"(?<=\d)D(?=\d)", "d", symbol.upper())
        raise ValueError(
            f"lower-case letters in {symbol!r}: venue symbols are upper-case "
            f"(did you mean {hint!r}?)"
        )

    if venue is not None:
        return _PARSERS[venue](symbol)

    candidates = _candidate_venues(symbol)
    if not candidates:
        raise ValueError(
            f"unrecognised symbol format {symbol!r}: expected a Deribit "
            f"(BTC-PERPETUAL, BTC-27DEC24-100000-C, BTC_USDC-PERPETUAL), OKX "
            f"(BTC-USDT-SWAP, BTC-USD-241227-100000-C), Binance option "
            f"(BTC-241227-100000-C) or ccxt (BTC/USD:BTC-241227-100000-C) symbol"
        )
    parsed: dict[str, InstrumentSpec] = {}
    errors: dict[str, ValueError] = {}
    for name in candidates:
        try:
            parsed[name] = _PARSERS[name](symbol)
        except ValueError as exc:
            errors[name] = exc
    if parsed:
        if len(set(parsed.values())) > 1:
            listing = "; ".join(f"{name}: {spec!r}" for name, spec in parsed.items())
            raise ValueError(
                f"ambiguous symbol {symbol!r}: candidates {', '.join(parsed)} "
                f"({listing}); pass venue= to choose"
            )
        return next(iter(parsed.values()))
    if len(errors) == 1:
        raise next(iter(errors.values()))
    listing = "; ".join(f"as {name}: {exc}" for name, exc in errors.items())
    raise ValueError(f"cannot parse {symbol!r} ({listing})")


def format_symbol(spec: InstrumentSpec, venue: str) -> str:
    """Write ``spec`` in ``venue``'s own symbol format.

    The inverse of :func:`parse_symbol`: ``format_symbol(parse_symbol(s, v), v)
    == s`` for every symbol ``s`` that parses for venue ``v``.

    Raises:
        ValueError: the venue is unknown, or it has no symbol for this
            instrument (e.g. a USDT perpetual on Binance options, an inverse
            contract not quoted in USD on Deribit, an expiry not at 08:00 UTC or
            outside 2000-2099).
        TypeError: ``spec`` is not an :class:`InstrumentSpec`.
    """
    _check_venue(venue)
    if not isinstance(spec, InstrumentSpec):
        raise TypeError(f"spec must be an InstrumentSpec, got {type(spec).__name__}")
    return _FORMATTERS[venue](spec)


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def _check_venue(venue: object) -> None:
    if venue not in VENUES:
        names = ", ".join(repr(v) for v in sorted(VENUES))
        raise ValueError(f"unknown venue {venue!r}: expected one of {names}")


def _bad(symbol: str, what: str, detail: str | None = None) -> ValueError:
    message = f"{what} in {symbol!r}"
    if detail:
        message += f": {detail}"
    return ValueError(message)


def _currency_problem(code: str) -> str | None:
    if not _CURRENCY_RE.fullmatch(code):
        return "expected upper-case letters and digits"
    if code.isdigit():
        return "expected at least one letter"
    if code in _RESERVED_WORDS:
        return "that is a reserved word in venue symbols"
    if _DERIBIT_DATE_RE.fullmatch(code):
        return "that looks like an expiry date"
    return None


def _check_currency(code: object, role: str, symbol: str | None = None) -> None:
    where = "" if symbol is None else f" in {symbol!r}"
    if not isinstance(code, str):
        raise TypeError(f"{role} currency must be a str, got {code!r}")
    if not code:
        raise ValueError(f"empty {role} currency{where}")
    problem = _currency_problem(code)
    if problem:
        raise ValueError(f"invalid {role} currency {code!r}{where}: {problem}")


def _check_fields(symbol: str, parts: list[str]) -> None:
    if "" in parts[1:]:
        raise _bad(symbol, "empty field", "adjacent, leading or trailing '-'")


def _expiry(year: int, month: int, day: int, text: str, symbol: str) -> datetime:
    if not 1 <= month <= 12:
        raise _bad(symbol, f"invalid expiry {text!r}", f"month {month} out of range")
    last_day = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last_day:
        raise _bad(
            symbol,
            f"invalid expiry {text!r}",
            f"day {day} out of range for {_MONTHS[month - 1]} {year}",
        )
    return datetime.combine(date(year, month, day), EXPIRY_TIME_UTC)


def _parse_deribit_date(text: str, symbol: str) -> datetime:
    match = _DERIBIT_DATE_RE.fullmatch(text)
    if not match:
        raise _bad(
            symbol,
            f"invalid expiry {text!r}",
            "expected DMMMYY such as '27DEC24' or '5JAN25'",
        )
    day, month, year = match.groups()
    if len(day) == 2 and day.startswith("0"):
        raise _bad(
            symbol,
            f"invalid expiry {text!r}",
            f"day has a leading zero (Deribit writes '{int(day)}{month}{year}')",
        )
    if month not in _MONTHS:
        raise _bad(symbol, f"invalid expiry {text!r}", f"unknown month {month!r}")
    return _expiry(2000 + int(year), _MONTHS.index(month) + 1, int(day), text, symbol)


def _parse_yymmdd(text: str, symbol: str) -> datetime:
    if not _YYMMDD_RE.fullmatch(text):
        raise _bad(symbol, f"invalid expiry {text!r}", "expected YYMMDD such as '241227'")
    year, month, day = int(text[:2]), int(text[2:4]), int(text[4:])
    return _expiry(2000 + year, month, day, text, symbol)


def _check_expiry_time(spec: InstrumentSpec, venue: str) -> datetime:
    expiry = spec.expiry
    assert expiry is not None
    if expiry.timetz() != EXPIRY_TIME_UTC:
        raise ValueError(
            f"cannot write expiry {expiry.isoformat()} as a {venue} symbol: "
            f"symbols carry only a date and expire at 08:00 UTC"
        )
    if not 2000 <= expiry.year <= 2099:
        raise ValueError(
            f"cannot write expiry {expiry.isoformat()} as a {venue} symbol: "
            f"two-digit years cover 2000-2099 only"
        )
    return expiry


def _format_deribit_date(spec: InstrumentSpec) -> str:
    expiry = _check_expiry_time(spec, "deribit")
    return f"{expiry.day}{_MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


def _format_yymmdd(spec: InstrumentSpec, venue: str) -> str:
    return _check_expiry_time(spec, venue).strftime("%y%m%d")


def _format_strike(strike: float, decimal_mark: str = ".") -> str:
    if strike.is_integer():
        return str(int(strike))
    # repr() is the shortest string that round-trips; Decimal avoids exponents.
    return format(Decimal(repr(strike)), "f").replace(".", decimal_mark)


def _parse_strike(text: str, symbol: str, decimal_mark: str = ".") -> float:
    if not _STRIKE_RE[decimal_mark].fullmatch(text):
        example = "'0d625' for 0.625" if decimal_mark == "d" else "'0.625'"
        raise _bad(
            symbol,
            f"invalid strike {text!r}",
            f"expected digits with an optional {decimal_mark!r} decimal mark, e.g. {example}",
        )
    value = float(text.replace(decimal_mark, "."))
    if not math.isfinite(value):
        raise _bad(symbol, f"strike {text!r} is out of range")
    if value <= 0:
        raise _bad(symbol, "strike must be positive", f"got {text!r}")
    canonical = _format_strike(value, decimal_mark)
    if canonical != text:
        raise _bad(symbol, f"non-canonical strike {text!r}", f"the venue writes {canonical!r}")
    return value


def _parse_option_type(text: str, symbol: str) -> str:
    if text not in _OPTION_TYPES:
        raise _bad(symbol, f"unknown option type {text!r}", "expected 'C' or 'P'")
    return text


def _option(symbol: str, expiry: datetime, strike: str, option_type: str,
            decimal_mark: str = ".", **fields: Any) -> InstrumentSpec:
    """An option spec from its parsed expiry and its strike / type fields."""
    return _spec(
        symbol,
        kind=InstrumentKind.OPTION,
        expiry=expiry,
        strike=_parse_strike(strike, symbol, decimal_mark),
        option_type=_parse_option_type(option_type, symbol),
        **fields,
    )


def _spec(symbol: str, **fields: Any) -> InstrumentSpec:
    try:
        return InstrumentSpec(**fields)
    except ValueError as exc:
        raise _bad(symbol, str(exc)) from None


def _option_tail(spec: InstrumentSpec, decimal_mark: str = ".") -> str:
    assert spec.strike is not None and spec.option_type is not None
    return f"{_format_strike(spec.strike, decimal_mark)}-{spec.option_type}"


def _describe(spec: InstrumentSpec) -> str:
    return f"{spec.kind.value} {spec.base}/{spec.quote} settled in {spec.settle}"


def _cannot(spec: InstrumentSpec, venue: str, reason: str) -> ValueError:
    return ValueError(f"cannot write {_describe(spec)} as a {venue} symbol: {reason}")


# --------------------------------------------------------------------------
# Deribit
# --------------------------------------------------------------------------

_DERIBIT_FORMS = (
    "expected BASE-PERPETUAL, BASE-DMMMYY, BASE-DMMMYY-STRIKE-C|P, BASE_QUOTE-... or BASE_QUOTE"
)


def _parse_deribit(symbol: str) -> InstrumentSpec:
    parts = symbol.split("-")
    head = parts[0]
    if "_" in head:
        base, _, quote = head.partition("_")
        _check_currency(base, "base", symbol)
        if "_" in quote:
            raise _bad(symbol, f"invalid instrument prefix {head!r}", "more than one '_'")
        _check_currency(quote, "quote", symbol)
        settle = quote
    else:
        base = head
        _check_currency(base, "base", symbol)
        quote, settle = "USD", base
    _check_fields(symbol, parts)

    if len(parts) == 1:
        if "_" not in head:
            raise _bad(symbol, "unrecognised Deribit symbol", _DERIBIT_FORMS)
        return _spec(symbol, kind=InstrumentKind.SPOT, base=base, quote=quote, settle=settle)
    if len(parts) == 2:
        if parts[1] == "PERPETUAL":
            return _spec(
                symbol,
                kind=InstrumentKind.PERPETUAL,
                base=base,
                quote=quote,
                settle=settle,
            )
        expiry = _parse_deribit_date(parts[1], symbol)
        return _spec(
            symbol,
            kind=InstrumentKind.FUTURE,
            base=base,
            quote=quote,
            settle=settle,
            expiry=expiry,
        )
    if len(parts) == 4:
        return _option(symbol, _parse_deribit_date(parts[1], symbol), parts[2], parts[3], "d",
                       base=base, quote=quote, settle=settle)
    raise _bad(symbol, "unrecognised Deribit symbol", _DERIBIT_FORMS)


def _format_deribit(spec: InstrumentSpec) -> str:
    if spec.kind is InstrumentKind.SPOT:
        return f"{spec.base}_{spec.quote}"
    if spec.inverse:
        if spec.quote != "USD":
            raise _cannot(spec, "deribit", "inverse contracts are quoted in USD")
        head = spec.base
    elif spec.settle == spec.quote:
        head = f"{spec.base}_{spec.quote}"
    else:
        raise _cannot(spec, "deribit", "contracts settle in the base or the quote currency")
    if spec.kind is InstrumentKind.PERPETUAL:
        return f"{head}-PERPETUAL"
    date = _format_deribit_date(spec)
    if spec.kind is InstrumentKind.FUTURE:
        return f"{head}-{date}"
    return f"{head}-{date}-{_option_tail(spec, 'd')}"


# --------------------------------------------------------------------------
# OKX
# --------------------------------------------------------------------------

_OKX_FORMS = (
    "expected BASE-QUOTE, BASE-QUOTE-SWAP, BASE-QUOTE-YYMMDD or BASE-QUOTE-YYMMDD-STRIKE-C|P"
)


def _okx_settle(base: str, quote: str) -> str:
    # OKX: USD-quoted derivatives are coin-margined; others settle in the quote.
    return base if quote == "USD" else quote


def _parse_okx(symbol: str) -> InstrumentSpec:
    parts = symbol.split("-")
    _check_currency(parts[0], "base", symbol)
    if len(parts) == 1:
        raise _bad(symbol, "unrecognised OKX symbol", _OKX_FORMS)
    if parts[1] == "SWAP":
        raise _bad(symbol, "missing quote currency", "OKX swaps are written BASE-QUOTE-SWAP")
    _check_currency(parts[1], "quote", symbol)
    _check_fields(symbol, parts)
    base, quote = parts[0], parts[1]
    common = {"base": base, "quote": quote, "settle": _okx_settle(base, quote)}

    if len(parts) == 2:
        return _spec(symbol, kind=InstrumentKind.SPOT, base=base, quote=quote, settle=quote)
    if len(parts) == 3:
        if parts[2] == "SWAP":
            return _spec(symbol, kind=InstrumentKind.PERPETUAL, **common)
        if not parts[2].isdigit():
            raise _bad(
                symbol,
                f"unknown contract suffix {parts[2]!r}",
                "expected 'SWAP' or an expiry YYMMDD",
            )
        expiry = _parse_yymmdd(parts[2], symbol)
        return _spec(symbol, kind=InstrumentKind.FUTURE, expiry=expiry, **common)
    if len(parts) == 5:
        return _option(symbol, _parse_yymmdd(parts[2], symbol), parts[3], parts[4], **common)
    raise _bad(symbol, "unrecognised OKX symbol", _OKX_FORMS)


def _format_okx(spec: InstrumentSpec) -> str:
    head = f"{spec.base}-{spec.quote}"
    if spec.kind is InstrumentKind.SPOT:
        return head
    expected = _okx_settle(spec.base, spec.quote)
    if spec.settle != expected:
        raise _cannot(
            spec,
            "okx",
            f"OKX {spec.quote}-quoted derivatives settle in {expected} "
            "(USD-quoted are coin-margined, others settle in the quote currency)",
        )
    if spec.kind is InstrumentKind.PERPETUAL:
        return f"{head}-SWAP"
    date = _format_yymmdd(spec, "okx")
    if spec.kind is InstrumentKind.FUTURE:
        return f"{head}-{date}"
    return f"{head}-{date}-{_option_tail(spec)}"


# --------------------------------------------------------------------------
# Binance options
# --------------------------------------------------------------------------


def _parse_binance(symbol: str) -> InstrumentSpec:
    parts = symbol.split("-")
    _check_currency(parts[0], "base", symbol)
    _check_fields(symbol, parts)
    if len(parts) != 4:
        raise _bad(
            symbol,
            "unrecognised Binance symbol",
            "only options are supported, written BASE-YYMMDD-STRIKE-C|P",
        )
    return _option(symbol, _parse_yymmdd(parts[1], symbol), parts[2], parts[3],
                   base=parts[0], quote="USDT", settle="USDT")


def _format_binance(spec: InstrumentSpec) -> str:
    if spec.kind is not InstrumentKind.OPTION or spec.quote != "USDT" or spec.settle != "USDT":
        raise _cannot(spec, "binance", "only USDT-quoted, USDT-settled options are supported")
    return f"{spec.base}-{_format_yymmdd(spec, 'binance')}-{_option_tail(spec)}"


# --------------------------------------------------------------------------
# ccxt unified symbols
# --------------------------------------------------------------------------

_CCXT_FORMS = (
    "expected BASE/QUOTE, BASE/QUOTE:SETTLE, BASE/QUOTE:SETTLE-YYMMDD "
    "or BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C|P"
)


def _parse_ccxt(symbol: str) -> InstrumentSpec:
    pair, colon, contract = symbol.partition(":")
    if pair.count("/") != 1:
        raise _bad(symbol, "unrecognised ccxt symbol", _CCXT_FORMS)
    base, _, quote = pair.partition("/")
    _check_currency(base, "base", symbol)
    _check_currency(quote, "quote", symbol)
    if not colon:
        return _spec(symbol, kind=InstrumentKind.SPOT, base=base, quote=quote, settle=quote)

    parts = contract.split("-")
    _check_currency(parts[0], "settle", symbol)
    _check_fields(symbol, parts)
    common = {"base": base, "quote": quote, "settle": parts[0]}
    if len(parts) == 1:
        return _spec(symbol, kind=InstrumentKind.PERPETUAL, **common)
    if len(parts) == 2:
        expiry = _parse_yymmdd(parts[1], symbol)
        return _spec(symbol, kind=InstrumentKind.FUTURE, expiry=expiry, **common)
    if len(parts) == 4:
        return _option(symbol, _parse_yymmdd(parts[1], symbol), parts[2], parts[3], **common)
    raise _bad(symbol, "unrecognised ccxt symbol", _CCXT_FORMS)


def _format_ccxt(spec: InstrumentSpec) -> str:
    pair = f"{spec.base}/{spec.quote}"
    if spec.kind is InstrumentKind.SPOT:
        return pair
    head = f"{pair}:{spec.settle}"
    if spec.kind is InstrumentKind.PERPETUAL:
        return head
    date = _format_yymmdd(spec, "ccxt")
    if spec.kind is InstrumentKind.FUTURE:
        return f"{head}-{date}"
    return f"{head}-{date}-{_option_tail(spec)}"


# --------------------------------------------------------------------------
# Dispatch and format detection
# --------------------------------------------------------------------------

_PARSERS: dict[str, Callable[[str], InstrumentSpec]] = {
    "deribit": _parse_deribit,
    "okx": _parse_okx,
    "binance": _parse_binance,
    "ccxt": _parse_ccxt,
}

_FORMATTERS: dict[str, Callable[[InstrumentSpec], str]] = {
    "deribit": _format_deribit,
    "okx": _format_okx,
    "binance": _format_binance,
    "ccxt": _format_ccxt,
}


def _candidate_venues(symbol: str) -> list[str]:
    """Venues whose format the symbol's shape suggests (may be several or none)."""
    if "/" in symbol or ":" in symbol:
        return ["ccxt"]
    parts = symbol.split("-")
    second = parts[1] if len(parts) > 1 else ""
    # The second field decides: a Deribit date starts with a digit and has
    # letters, a Binance date is all digits, an OKX quote starts with a letter.
    # (So an OKX quote currency starting with a digit needs venue="okx".)
    date_like = second[:1].isdigit() and not second.isdigit()
    candidates = []
    if "_" in parts[0] or second == "PERPETUAL" or date_like:
        candidates.append("deribit")
    if second.isdigit():
        candidates.append("binance")
    if (second[:1].isalpha() and second not in _RESERVED_WORDS) or parts[-1] == "SWAP":
        candidates.append("okx")
    return candidates
