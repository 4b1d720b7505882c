"""The margin engine: assets, instruments, prices, accounts, cross margin and
microsecond pre-trade checks.

An :class:`Engine` holds a venue's static data (assets with haircut tiers,
margin models, instruments), its market (asset prices, instrument marks, each
with the time it was observed) and its accounts (balances per asset, positions,
resting orders). All state lives in the C++ core; this class adds names,
validation and documentation.

Units
-----
* Every asset has a price in one numeraire (USD). Linear instruments are quoted
  and settled in their settlement asset; inverse instruments (coin-settled) are
  quoted in USD and settled in their underlying coin.
* Position sizes are signed numbers of contracts (long > 0). A linear contract is
  ``contract_size`` units of the underlying; an inverse future's contract is
  ``contract_size`` USD of face value; an option contract is ``contract_size``
  units of the underlying, its mark in the settlement currency per unit (coin for
  inverse options).
* An account measures equity and requirements in its margin asset.

Margin (cross mode)
-------------------
``equity = collateral value + unrealised P&L of futures + mark value of options``;
collateral is valued tier by tier with haircuts (debts count in full). Each
position's initial (IM) and maintenance (MM) requirement comes from its
instrument's model (see :meth:`Engine.add_model`), with resting orders counted at
their worst case (all bids or all asks filling), and the account's requirement is
the sum. Requirements are rounded up and equity down to the margin asset's
``quantum``. ``available = equity - IM``; ``margin_ratio = equity / MM``; the
health state compares equity with multiples of MM (:meth:`Engine.set_thresholds`).

Reason codes of :meth:`Engine.check_order`: ``ok``, ``insufficient_margin``,
``reduce_only``, ``stale_price``, ``unknown_account``, ``unknown_instrument``,
``invalid_quantity``, ``invalid_price``, ``instrument_expired``, ``no_price``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np

from . import _core
from .symbols import InstrumentKind, parse_symbol

__all__ = ["HEALTH_STATES", "BookEvaluation", "Engine"]

HEALTH_STATES = ("healthy", "warning", "reduce_only", "liquidation", "bankrupt")
_KINDS = {"spot": 0, "perpetual": 1, "future": 2, "option": 3}
_SPEC_KINDS = {
    InstrumentKind.SPOT: "spot",
    InstrumentKind.PERPETUAL: "perpetual",
    InstrumentKind.FUTURE: "future",
    InstrumentKind.OPTION: "option",
}

OrderCheck = _core.OrderCheck
AccountSummary = _core.AccountSummary
PositionRisk = _core.PositionRisk


class BookEvaluation(NamedTuple):
    """Every account of the engine at once (index = account id)."""

    equity: np.ndarray
    im: np.ndarray
    mm: np.ndarray
    available: np.ndarray
    state: np.ndarray  # int8 codes into HEALTH_STATES


def _finite(name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite (got {x})")
    if positive and not x > 0:
        raise ValueError(f"{name} must be > 0 (got {x})")
    if nonneg and not x >= 0:
        raise ValueError(f"{name} must be >= 0 (got {x})")
    return x


def _loose_id(table: dict[str, int], key: Any) -> int:
    """A name or integer-like id as an id; -1 (the core's "unknown") otherwise."""
    if isinstance(key, str):
        return table.get(key, -1)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        k = int(key)
        return k if -(2**31) <= k < 2**31 else -1
    return -1


def _epoch(value: Any, name: str = "expiry") -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (UTC)")
        return int(value.astimezone(timezone.utc).timestamp())
    return int(_finite(name, value, positive=True))


class Engine:
    """A venue's accounts and their margin, with the state held in the C++ core.

    Accounts, instruments and assets are named; every method accepts the name or
    the integer id that ``add_*`` returned (ids are faster on hot paths).

    Threads: one engine serves one Python thread at a time. Batch calls
    (:meth:`evaluate_all`, :meth:`plan_all`) release the GIL and use the core's
    own thread pool, so other Python threads keep running, but they must not
    call into the same engine until the batch returns. Separate engines (shards)
    are independent.

    Examples
    --------
    >>> import marginkit as mk
    >>> eng = mk.Engine()
    >>> eng.add_asset("USDC", price=1.0, quantum=0.01)
    0
    >>> eng.add_asset("BTC", price=100_000.0)
    1
    >>> eng.add_model("btc_linear", "linear_rate", im_base=0.02, im_slope=5e-5,
    ...               mm_base=0.01, mm_slope=5e-5)
    0
    >>> eng.add_instrument("BTC_USDC-PERPETUAL", model="btc_linear", mark=100_000.0)
    0
    >>> eng.add_account("alice", margin_asset="USDC")
    0
    >>> eng.deposit("alice", "USDC", 10_000)
    >>> eng.check_order("alice", "BTC_USDC-PERPETUAL", 1.0, 100_000.0).accepted
    True
    """

    def __init__(self) -> None:
        self._attach(_core.Engine())

    def _attach(self, core: Any) -> None:
        """Wraps a core engine and indexes its names."""
        self._core = core
        self._assets = {core.asset_name(i): i for i in range(core.num_assets())}
        self._instruments = {core.instrument_name(i): i for i in range(core.num_instruments())}
        self._accounts = {core.account_name(i): i for i in range(core.num_accounts())}
        self._models = {core.model_name(i): i for i in range(core.num_models())}

    # ---- persistence --------------------------------------------------------------
    FORMAT_VERSION = 2

    def to_bytes(self) -> bytes:
        """The whole engine state (static data, prices with their times, accounts,
        positions, resting orders, settings) in marginkit's versioned binary format."""
        return self._core.save()

    @classmethod
    def from_bytes(cls, data: bytes) -> Engine:
        """An engine from :meth:`to_bytes` output; ValueError if the data is not a
        marginkit state, has an unknown version, or is truncated or corrupt."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        engine = cls.__new__(cls)
        engine._attach(_core.Engine.load(bytes(data)))
        return engine

    def save(self, path: Any) -> None:
        """Writes the state to a file (see :meth:`to_bytes`); atomic: a temporary
        file is renamed into place, so a crash never leaves a half-written state."""
        import os
        import tempfile

        target = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(target))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".marginkit-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
            # mkstemp makes the file private (0600): give it the permissions a
            # plain open() would, or those of the file it replaces.
            if os.path.exists(target):
                mode = os.stat(target).st_mode & 0o777
            else:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: Any) -> Engine:
        """Reads a state written by :meth:`save`."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def __getstate__(self) -> bytes:
        return self.to_bytes()

    def __setstate__(self, state: bytes) -> None:
        self._attach(_core.Engine.load(state))

    # ---- names ------------------------------------------------------------------
    @staticmethod
    def _resolve(table: dict[str, int], count: int, what: str, key: Any) -> int:
        if isinstance(key, str):
            try:
                return table[key]
            except KeyError:
                raise ValueError(f"unknown {what} {key!r}") from None
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if 0 <= int(key) < count:
                return int(key)
            raise ValueError(f"unknown {what} id {int(key)}")
        raise TypeError(f"{what} must be a name (str) or an id (int), got {type(key).__name__}")

    def _asset(self, key: Any) -> int:
        return self._resolve(self._assets, len(self._assets), "asset", key)

    def _instr(self, key: Any) -> int:
        return self._resolve(self._instruments, len(self._instruments), "instrument", key)

    def _acct(self, key: Any) -> int:
        return self._resolve(self._accounts, len(self._accounts), "account", key)

    def _model(self, key: Any) -> int:
        return self._resolve(self._models, len(self._models), "model", key)

    @property
    def assets(self) -> list[str]:
        """Asset names, by id."""
        return list(self._assets)

    @property
    def instruments(self) -> list[str]:
        """Instrument names, by id."""
        return list(self._instruments)

    @property
    def accounts(self) -> list[str]:
        """Account names, by id."""
        return list(self._accounts)

    # ---- static data --------------------------------------------------------------
    def add_asset(
        self,
        name: str,
        *,
        price: float | None = None,
        time: float = 0.0,
        haircuts: Iterable[tuple[float, float]] | None = None,
        quantum: float = 0.0,
        liability_weight: float = 1.0,
        imf_factor: float = 0.0,
        weight_quantum: float = 0.0,
        liquidator_fee: float = 0.0,
    ) -> int:
        """Adds a collateral / settlement asset; returns its id.

        ``haircuts``: marginal tiers ``[(upto_amount, haircut), ...]`` with
        increasing ``upto`` (the last may be ``math.inf``): the first tier's
        amount counts at ``1 - haircut``, the next tier's at its own, and so on;
        amounts beyond the last tier count for nothing. ``quantum``: the money
        rounding step of amounts in this asset (requirements round up, equity
        down). ``price``: its USD price now (or set it later with
        :meth:`set_price`).

        Spot margin (Drift-style): ``liability_weight`` (>= 1): a debt in this
        asset counts at ``amount x price x weight``; ``imf_factor`` (>= 0): size
        weights, a holding of ``n`` units counts at most at weight ``1.1 / (1 +
        imf sqrt(n))`` and a debt at ``max(lw, 0.8 lw + imf sqrt(n))``;
        ``weight_quantum``: average weights round down (holdings) / up (debts) to
        this step (Drift: 1e-4). ``liquidator_fee`` in [0, 1): in a spot
        liquidation a deposit of this asset is handed over at ``1 + fee`` and a
        borrow taken over at ``1 - fee`` (:meth:`liquidate_spot`).
        """
        if price is not None:
            price = _finite("price", price, positive=True)
            time = _finite("time", time)
        tiers = list(haircuts or [])
        upto = [_finite(f"haircuts[{i}].upto", u, positive=True) if u != math.inf else math.inf
                for i, (u, _) in enumerate(tiers)]
        cut = [_finite(f"haircuts[{i}].haircut", h, nonneg=True) for i, (_, h) in enumerate(tiers)]
        lw = _finite("liability_weight", liability_weight)
        if lw < 1.0:
            raise ValueError(f"liability_weight must be >= 1, got {lw!r}")
        wq = _finite("weight_quantum", weight_quantum, nonneg=True)
        if wq >= 1.0:
            raise ValueError(f"weight_quantum must be < 1, got {wq!r}")
        fee = _finite("liquidator_fee", liquidator_fee, nonneg=True)
        if fee >= 1.0:
            raise ValueError(f"liquidator_fee must be < 1, got {fee!r}")
        aid = self._core.add_asset(str(name), upto, cut, _finite("quantum", quantum, nonneg=True),
                                   lw, _finite("imf_factor", imf_factor, nonneg=True), wq, fee)
        self._assets[str(name)] = aid
        if price is not None:
            self.set_price(aid, price, time)
        return aid

    def add_model(self, name: str, kind: str, **params: Any) -> int:
        """Adds a margin model (a parameter set); returns its id.

        ``kind="linear_rate"`` (Deribit futures): ``im_base, im_slope, mm_base,
        mm_slope``; rate = base + slope x size in underlying units; requirement =
        size x rate, valued at the index.

        ``kind="tiered"`` (Binance brackets): ``brackets=[(floor_notional, mmr,
        imr), ...]`` starting at floor 0, at most 64; MM = notional x mmr - cum, IM = notional
        x imr - cum_im, with the cumulative deductions derived so both are
        continuous; ``value_at_entry=True`` values the position at its average
        entry price instead of the mark (Bybit's isolated margin).

        Both take the venue mechanisms of dYdX's liquidity tiers:
        ``mm_fraction`` in [0, 1] derives the MM rates from the IM rates (then
        ``mm_base`` / ``mm_slope`` / the brackets' mmr are not given: MM rate =
        IM rate x fraction); ``oi_lower`` < ``oi_upper`` (open interest notional
        caps, settlement currency; ``oi_upper=0``: off) raise the IM rate
        linearly from itself to 1 as the open interest set with
        :meth:`set_open_interest` goes from one cap to the other;
        ``rate_quantum`` (e.g. 1e-6 for ppm) rounds derived MM rates and the
        open-interest increase down to the venue's step (0: exact).

        ``kind="option_standard"`` (Deribit / bit.com / Bybit): ``im_otm=0.15,
        im_min=0.10, mm=0.075, mm_mark_call=0.0, mm_mark_put=0.075, liq_fee=0.0``;
        for a short option per unit, with U the index and OTM the out-of-the-money
        amount: MM = max(mm U, mm_mark x mark) + mark + liq_fee U; IM = max(max(im_otm
        U - OTM, im_min U) + mark, MM). Long options need their premium (IM = value
        at mark).
        """
        if name in self._models:
            raise ValueError(f"duplicate model {name!r}")
        venue = {"mm_fraction", "rate_quantum", "oi_lower", "oi_upper"}
        allowed = {"linear_rate": {"im_base", "im_slope", "mm_base", "mm_slope"} | venue,
                   "tiered": {"brackets", "value_at_entry"} | venue,
                   "option_standard": {"im_otm", "im_min", "mm", "mm_mark_call", "mm_mark_put",
                                       "liq_fee"}}
        if kind not in allowed:
            raise ValueError(f"unknown model kind {kind!r} (linear_rate, tiered, option_standard)")
        unknown = sorted(set(params) - allowed[kind])
        if unknown:
            raise ValueError(f"unknown parameter(s) for {kind}: {unknown}")
        optional = {"value_at_entry"} | venue
        if "mm_fraction" in params:
            frac = _finite("mm_fraction", params["mm_fraction"], nonneg=True)
            if frac > 1.0:
                raise ValueError(f"mm_fraction must be in [0, 1], got {frac!r}")
            given = sorted({"mm_base", "mm_slope"} & set(params))
            if given:
                raise ValueError(f"mm_fraction derives the MM rates: do not give {given}")
            params.setdefault("mm_base", 0.0)
            params.setdefault("mm_slope", 0.0)
        rates = (_finite("mm_fraction", params.pop("mm_fraction", -1.0)),
                 _finite("rate_quantum", params.pop("rate_quantum", 0.0), nonneg=True),
                 _finite("oi_lower", params.pop("oi_lower", 0.0), nonneg=True),
                 _finite("oi_upper", params.pop("oi_upper", 0.0), nonneg=True))
        missing = (sorted(allowed[kind] - optional - set(params))
                   if kind != "option_standard" else [])
        if missing:
            raise ValueError(f"missing parameter(s) for {kind}: {missing}")
        if kind == "linear_rate":
            mid = self._core.add_model_linear_rate(
                str(name), *(_finite(k, params.pop(k))
                  for k in ("im_base", "im_slope", "mm_base", "mm_slope")), *rates)
        elif kind == "tiered":
            brackets = [tuple(b) for b in params.pop("brackets")]
            if rates[0] >= 0.0 and any(len(b) == 2 for b in brackets):
                brackets = [(b[0], 0.0, b[1]) if len(b) == 2 else b for b in brackets]
            if any(len(b) != 3 for b in brackets):
                raise ValueError("brackets must be (floor, mmr, imr) triples "
                                 "((floor, imr) pairs with mm_fraction)")
            floors = [float(b[0]) for b in brackets]
            mmr = [float(b[1]) for b in brackets]
            imr = [float(b[2]) for b in brackets]
            mid = self._core.add_model_tiered(str(name), floors, mmr, imr,
                                              bool(params.pop("value_at_entry", False)), *rates)
        elif kind == "option_standard":
            defaults = {"im_otm": 0.15, "im_min": 0.10, "mm": 0.075, "mm_mark_call": 0.0,
                        "mm_mark_put": 0.075, "liq_fee": 0.0}
            args = [_finite(k, params.pop(k, v)) for k, v in defaults.items()]
            mid = self._core.add_model_option_standard(str(name), *args)
        self._models[name] = mid
        return mid

    def add_instrument(
        self,
        name: str,
        *,
        model: str | int,
        kind: str | None = None,
        underlying: str | None = None,
        settle: str | None = None,
        inverse: bool | None = None,
        contract_size: float = 1.0,
        strike: float | None = None,
        cp: str | None = None,
        expiry: Any = None,
        taker_fee: float = 0.0,
        venue: str | None = None,
        mark: float | None = None,
        time: float = 0.0,
    ) -> int:
        """Adds an instrument; returns its id.

        Fields not given are read from the symbol in the venue's own format
        (Deribit, OKX, Binance options, ccxt; see :mod:`marginkit.symbols`), so
        ``add_instrument("BTC-27DEC24-100000-C", model="deribit_options")`` is
        enough. ``expiry``: a UTC ``datetime`` or unix seconds. The underlying and
        settlement assets must have been added.
        """
        if kind is None or underlying is None or settle is None:
            spec = parse_symbol(name, venue)
            kind = kind or _SPEC_KINDS[spec.kind]
            underlying = underlying or spec.base
            settle = settle or spec.settle
            inverse = spec.inverse if inverse is None else inverse
            strike = spec.strike if strike is None else strike
            cp = spec.option_type if cp is None else cp
            expiry = spec.expiry if expiry is None else expiry
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
        if mark is not None:
            mark = _finite("mark", mark, nonneg=True, positive=kind != "option")
            time = _finite("time", time)
        if isinstance(model, str):
            if model not in self._models:
                raise ValueError(f"unknown model {model!r}")
            model = self._models[model]
        cp_code = 0
        if kind == "option":
            if cp not in ("C", "P", "call", "put"):
                raise ValueError(f"cp must be 'C'/'call' or 'P'/'put' for an option, got {cp!r}")
            cp_code = 1 if cp in ("C", "call") else -1
        iid = self._core.add_instrument(
            str(name), _KINDS[kind], self._asset(underlying), self._asset(settle), bool(inverse),
            _finite("contract_size", contract_size, positive=True),
            0.0 if strike is None else _finite("strike", strike, positive=True),
            cp_code, 0 if expiry is None else _epoch(expiry), int(model),
            _finite("taker_fee", taker_fee, nonneg=True))
        self._instruments[str(name)] = iid
        if mark is not None:
            self.set_mark(iid, mark, time)
        return iid

    def add_account(self, name: str, margin_asset: str | int) -> int:
        """Adds an empty cross-margin account measured in ``margin_asset``; returns its id."""
        aid = self._core.add_account(str(name), self._asset(margin_asset))
        self._accounts[str(name)] = aid
        return aid

    def add_accounts(self, names: Sequence[str], margin_asset: str | int) -> np.ndarray:
        """Adds many accounts at once (bulk loading); returns their ids."""
        names = [str(n) for n in names]
        first = self._core.add_accounts(names, self._asset(margin_asset))
        for k, name in enumerate(names):
            self._accounts[name] = first + k
        return np.arange(first, first + len(names), dtype=np.int32)

    def deposit_many(self, accounts: Any, asset: str | int, amounts: Any) -> None:
        """Bulk deposits: ``accounts`` (ids) and ``amounts`` arrays of one length."""
        ids = np.ascontiguousarray(accounts, dtype=np.int32)
        self._core.deposit_many(ids, self._asset(asset),
                                np.ascontiguousarray(amounts, dtype=np.float64))

    def set_positions(self, accounts: Any, instruments: Any, sizes: Any, entries: Any) -> None:
        """Loads positions as state (no cash flows): arrays of account ids,
        instrument ids, signed sizes and average entry prices, one per position.
        Everything is checked before anything changes."""
        self._core.set_positions(np.ascontiguousarray(accounts, dtype=np.int32),
                                 np.ascontiguousarray(instruments, dtype=np.int32),
                                 np.ascontiguousarray(sizes, dtype=np.float64),
                                 np.ascontiguousarray(entries, dtype=np.float64))

    # ---- portfolio margin ---------------------------------------------------------
    def add_scenario_set(
        self,
        name: str,
        scenarios: Sequence[tuple[float, int, float]],
        *,
        vol_up: float = 0.0,
        vol_down: float = 0.0,
        relative: bool = True,
        scale_by_dte: bool = False,
        pivot_days: float = 30.0,
        floor_days: float = 1.0,
        p_short: float = 0.30,
        p_long: float = 0.13,
        min_vol_up: float = 0.0,
        im_factor: float = 1.0,
        short_option_charge: float = 0.0,
        delta_charge: float = 0.0,
        measure: str = "worst",
        confidence: float = 0.99,
        joint_moves: dict[str, Sequence[float]] | None = None,
    ) -> int:
        """Adds a scenario set (see :mod:`marginkit.scenarios` for the method and
        presets: ``eng.add_scenario_set("deribit", **scenarios.deribit())``).

        ``scenarios``: ``(move, vol, weight)`` triples. Volatility shocks: up
        ``vol (1 + vol_up g)`` (or ``vol + vol_up g`` if not ``relative``), floored
        at ``min_vol_up``; down ``vol (1 - vol_down g)`` floored at 0; ``g = 1``, or
        ``(pivot_days / max(DTE, floor_days))^p`` with ``p = p_short`` under the
        pivot and ``p_long`` beyond when ``scale_by_dte``.

        ``measure``: ``"worst"`` (largest weighted loss), or ``"var"`` / ``"es"``
        (value-at-risk / expected shortfall at ``confidence`` over equally likely
        scenarios). ``joint_moves``: ``{underlying: [move per scenario]}`` for a
        historical set that moves several underlyings together (see
        :func:`marginkit.scenarios.historical`); positions on all of them are then
        margined as one portfolio, and the scenarios' own moves are unused.
        """
        rows = [tuple(s) for s in scenarios]
        if any(len(r) != 3 for r in rows):
            raise ValueError("scenarios must be (move, vol, weight) triples")
        moves = [_finite(f"scenarios[{i}].move", r[0]) for i, r in enumerate(rows)]
        vols = [int(r[1]) for r in rows]
        weights = [_finite(f"scenarios[{i}].weight", r[2], nonneg=True)
                   for i, r in enumerate(rows)]
        measures = {"worst": 0, "var": 1, "es": 2}
        if measure not in measures:
            raise ValueError(f"measure must be 'worst', 'var' or 'es', got {measure!r}")
        joint_ids: list[int] = []
        flat: list[float] = []
        for name_u, moves_u in (joint_moves or {}).items():
            col = np.asarray(moves_u, dtype=np.float64)
            if col.shape != (len(rows),):
                raise ValueError(f"joint_moves[{name_u!r}] must have one move per scenario "
                                 f"({len(rows)}), got shape {col.shape}")
            bad = np.flatnonzero(~np.isfinite(col) | (col <= -1.0))
            if bad.size:
                raise ValueError(f"joint_moves[{name_u!r}][{int(bad[0])}] must be finite and > -1")
            joint_ids.append(self._asset(name_u))
            flat.extend(col.tolist())
        return self._core.add_scenario_set(
            str(name), moves, vols, weights, _finite("vol_up", vol_up, nonneg=True),
            _finite("vol_down", vol_down, nonneg=True), bool(relative), bool(scale_by_dte),
            _finite("pivot_days", pivot_days, positive=True),
            _finite("floor_days", floor_days, positive=True), _finite("p_short", p_short),
            _finite("p_long", p_long), _finite("min_vol_up", min_vol_up, nonneg=True),
            _finite("im_factor", im_factor), _finite("short_option_charge",
                                                     short_option_charge, nonneg=True),
            _finite("delta_charge", delta_charge, nonneg=True), measures[measure],
            _finite("confidence", confidence), joint_ids, flat)

    def _scenario_set(self, key: str | int) -> int:
        names = {self._core.scenario_set_name(i): i
                 for i in range(self._core.num_scenario_sets())}
        return self._resolve(names, len(names), "scenario set", key)

    def set_scenarios(self, underlying: str | int, scenario_set: str | int | None) -> None:
        """Margins ``underlying`` by ``scenario_set`` in portfolio-mode accounts
        (None: standard margin for it)."""
        sid = -1 if scenario_set is None else self._scenario_set(scenario_set)
        self._core.set_underlying_scenarios(self._asset(underlying), sid)

    def scenario_set_info(self, scenario_set: str | int) -> dict[str, Any]:
        """A scenario set as data: its ``name`` and every keyword argument of
        :meth:`add_scenario_set` (scenarios ``(move, vol, weight)``, the
        volatility-shock model, IM factor, add-on charges, loss measure and
        confidence, and ``joint_moves`` for a historical set), so that
        ``add_scenario_set(other, **without_name)`` makes an identical set."""
        (name, scen, im_factor, short_charge, delta_charge, vol, measure, confidence,
         joint, joint_moves) = self._core.scenario_set(self._scenario_set(scenario_set))
        info: dict[str, Any] = {"name": name, "scenarios": scen, **vol,
                                "im_factor": im_factor, "short_option_charge": short_charge,
                                "delta_charge": delta_charge,
                                "measure": ("worst", "var", "es")[measure],
                                "confidence": confidence}
        if joint:
            n = len(scen)
            names = self.assets
            info["joint_moves"] = {names[u]: list(joint_moves[j * n:(j + 1) * n])
                                   for j, u in enumerate(joint)}
        return info

    def asset_info(self, asset: str | int) -> dict[str, Any]:
        """An asset's static data as :meth:`add_asset` takes it (``name``,
        ``haircuts``, ``quantum``, the spot weights and ``liquidator_fee``), plus
        its current USD ``price``."""
        aid = self._asset(asset)
        info = dict(self._core.asset_spec(aid))
        info["price"] = self._core.price(aid)
        return info

    def instrument_info(self, instrument: str | int) -> dict[str, Any]:
        """An instrument's static data as :meth:`add_instrument` takes it: ``name``,
        ``kind``, ``underlying``, ``settle`` (asset names), ``inverse``,
        ``contract_size``, ``strike`` and ``cp`` (options; else None), ``expiry``
        (unix seconds; None for spot and perpetuals), ``model`` (its name) and
        ``taker_fee``."""
        d = dict(self._core.instrument_spec(self._instr(instrument)))
        kinds = {v: k for k, v in _KINDS.items()}
        names = self.assets
        d["kind"] = kinds[d["kind"]]
        d["underlying"] = names[d["underlying"]]
        d["settle"] = names[d["settle"]]
        option = d["kind"] == "option"
        d["strike"] = d["strike"] if option else None
        d["cp"] = ("C" if d["cp"] > 0 else "P") if option else None
        d["expiry"] = d["expiry"] or None
        d["model"] = self._core.model_name(d["model"])
        return d

    def set_mode(self, account: str | int, mode: str) -> None:
        """``"cross"`` (per-position standard margin, summed) or ``"portfolio"``
        (scenario-based on every underlying that has a scenario set)."""
        codes = {"cross": 0, "portfolio": 1}
        if mode not in codes:
            raise ValueError(f"mode must be 'cross' or 'portfolio', got {mode!r}")
        self._core.set_mode(self._acct(account), codes[mode])

    @property
    def portfolio_offset(self) -> float:
        """Offset between underlyings in portfolio accounts, in ``[0, 1]`` (default
        0: requirements summed). With offset ``k``, the summed loss ``L`` of the
        grid groups (non-joint worst-loss sets with one scenario count) is reduced
        by ``k x (L - J)``, ``J`` the loss of their summed scenario P&L, so the
        requirement stays between ``J`` and ``L``; IM by the credit x the smallest
        IM factor (taken from the least favourable resting-order case)."""
        return self._core.portfolio_offset

    @portfolio_offset.setter
    def portfolio_offset(self, value: float) -> None:
        self._core.portfolio_offset = _finite("portfolio_offset", value)

    def portfolio_credit(self, account: str | int) -> tuple[float, float]:
        """The account's offset credit ``(MM, IM)`` between underlyings."""
        return self._core.portfolio_credit(self._acct(account))

    def mode(self, account: str | int) -> str:
        """The account's margin mode."""
        return ("cross", "portfolio")[self._core.mode(self._acct(account))]

    def risk_row(self, instrument: str | int) -> np.ndarray:
        """The instrument's row of the risk array: P&L per contract in each
        scenario of its underlying's set, in its settlement currency (unweighted;
        empty if the underlying has no set)."""
        return self._core.risk_row(self._instr(instrument))

    def portfolio(self, account: str | int) -> list[dict[str, Any]]:
        """Portfolio-margin detail per underlying: ``worst`` scenario index,
        weighted ``pnl`` per scenario, ``loss``, ``short_charge``, ``delta_charge``,
        ``mm``, ``im``, and each position's weighted P&L ``contribution`` at the
        worst scenario (margin asset)."""
        out = self._core.portfolio(self._acct(account))
        for group in out:
            u = group["underlying"]
            group["underlying"] = None if u < 0 else self._core.asset_name(u)
            group["set"] = self._core.scenario_set_name(group["set"])
            group["instruments"] = [self._core.instrument_name(i) for i in group["instruments"]]
        return out

    # ---- liquidation ----------------------------------------------------------------
    def set_liquidity(self, instrument: str | int, *, spread: float = 0.0, impact: float = 0.0,
                      max_step: float = 0.0) -> None:
        """The cost of closing ``x`` contracts in one go: the average fill is
        ``mark x (1 -/+ (spread + impact x))`` for a sell / buy (``impact``: the
        fraction of the price per contract, a linear book); ``max_step``: the most
        contracts one liquidation step may trade (0: no limit)."""
        self._core.set_liquidity(self._instr(instrument), _finite("spread", spread, nonneg=True),
                                 _finite("impact", impact, nonneg=True),
                                 _finite("max_step", max_step, nonneg=True))

    def set_liquidation_params(self, *, target: str = "maintenance", buffer: float = 0.0,
                               fee_rate: float = 0.0, fee_policy: str = "fixed",
                               max_if_fee: float = 0.0, if_factor: float = 0.95,
                               ramp_per_second: float = 0.0, ramp_grace: float = 0.0,
                               max_fee_rate: float = 0.0, fill_policy: str = "liquidity",
                               bankruptcy_adjustment: float = 1.0, spread_to_mm: float = 0.0,
                               spot_dust: float = 0.0) -> None:
        """What a liquidation restores, its penalty and its fill price.

        ``target="maintenance"``: equity >= MM x (1 + buffer); ``"initial"``:
        equity >= IM. ``fee_rate``: the penalty on traded notional, paid to the
        insurance fund, never more than the equity left (a fee never makes an
        account bankrupt).

        ``fee_policy="margin_implied"`` (Drift) adds an insurance-fund fee implied
        by the margin left, ``min(max_if_fee, if_factor x (mm_rate - fee_rate -
        shortage / notional))`` (>= 0), from the account before each step
        (``mm_rate``: the position's MM / notional; ``shortage``: MM - equity).
        Fee ramp (Drift): once the account has been inactive (``now -``
        :meth:`last_active`) for ``ramp_grace`` seconds, ``fee_rate`` becomes
        ``min(fee_rate + ramp_per_second x inactive seconds, max_fee_rate)``.

        ``fill_policy="fillable"`` (dYdX) fills at ``mark -/+ ABR x spread_to_mm
        x MM_position / notional`` with ``ABR = clamp(bankruptcy_adjustment x
        (1 - equity / MM), 0, 1)`` instead of the liquidity model.

        ``spot_dust`` (USD): in :meth:`liquidate_spot`, a deposit left worth less
        is handed over whole.
        """
        codes = {"maintenance": 0, "initial": 1}
        if target not in codes:
            raise ValueError(f"target must be 'maintenance' or 'initial', got {target!r}")
        fees = {"fixed": 0, "margin_implied": 1}
        if fee_policy not in fees:
            raise ValueError(f"fee_policy must be 'fixed' or 'margin_implied', got {fee_policy!r}")
        fills = {"liquidity": 0, "fillable": 1}
        if fill_policy not in fills:
            raise ValueError(f"fill_policy must be 'liquidity' or 'fillable', got {fill_policy!r}")
        rates = {"fee_rate": fee_rate, "max_if_fee": max_if_fee, "max_fee_rate": max_fee_rate}
        for key, value in rates.items():
            if _finite(key, value, nonneg=True) >= 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value!r}")
        for key, value in {"if_factor": if_factor, "spread_to_mm": spread_to_mm}.items():
            if _finite(key, value, nonneg=True) > 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {value!r}")
        self._core.set_liquidation_params(
            codes[target], _finite("buffer", buffer, nonneg=True), float(fee_rate),
            fees[fee_policy], float(max_if_fee), float(if_factor),
            _finite("ramp_per_second", ramp_per_second, nonneg=True),
            _finite("ramp_grace", ramp_grace, nonneg=True), float(max_fee_rate),
            fills[fill_policy],
            _finite("bankruptcy_adjustment", bankruptcy_adjustment, nonneg=True),
            float(spread_to_mm), _finite("spot_dust", spot_dust, nonneg=True))

    def liquidation_params(self) -> dict[str, Any]:
        """The liquidation parameters, as :meth:`set_liquidation_params` takes them."""
        p = self._core.liquidation_params()
        p["target"] = ("maintenance", "initial")[p["target"]]
        p["fee_policy"] = ("fixed", "margin_implied")[p["fee_policy"]]
        p["fill_policy"] = ("liquidity", "fillable")[p["fill_policy"]]
        return p

    def set_open_interest(self, instrument: str | int, contracts: float) -> None:
        """The venue's open interest in an instrument, in contracts (market data
        for models with open-interest caps: their IM rate follows its notional at
        the mark)."""
        self._core.set_open_interest(self._instr(instrument),
                                     _finite("contracts", contracts, nonneg=True))

    def open_interest(self, instrument: str | int) -> float:
        """The open interest set with :meth:`set_open_interest` (contracts)."""
        return self._core.open_interest(self._instr(instrument))

    def model_rates(self, model: str | int) -> dict[str, Any]:
        """A model's rates as the engine uses them (MM rates derived from a
        maintenance fraction included): ``im_base, im_slope, mm_base, mm_slope,
        bracket_imr, bracket_mmr, mm_fraction, rate_quantum, oi_lower, oi_upper``."""
        return self._core.model_rates(self._model(model))

    def initial_rate(self, model: str | int, rate: float, oi_notional: float) -> float:
        """The IM rate ``rate`` of a model raised by its open-interest caps at an
        open interest notional ``oi_notional`` (settlement currency)."""
        return self._core.oi_adjusted_rate(self._model(model), _finite("rate", rate, nonneg=True),
                                           _finite("oi_notional", oi_notional, nonneg=True))

    def set_last_active(self, account: str | int, time: float) -> None:
        """When the account last acted (engine clock; deposits, withdrawals,
        fills and orders set it to :attr:`now`). Drives the liquidation fee ramp."""
        self._core.set_last_active(self._acct(account), _finite("time", time))

    def last_active(self, account: str | int) -> float:
        """When the account last acted (engine clock)."""
        return self._core.last_active(self._acct(account))

    def liquidation_fill_price(self, account: str | int, instrument: str | int,
                               qty: float | None = None) -> float:
        """The price a liquidation fill of ``qty`` (None: closing the whole
        position) would get now under the fill policy (NaN without a position)."""
        q = 0.0 if qty is None else _finite("qty", qty)
        return self._core.liquidation_fill_price(self._acct(account), self._instr(instrument), q)

    def liquidation_fee_rate(self, account: str | int,
                             instrument: str | int) -> tuple[float, float]:
        """The penalty rate a liquidation fill of the position would pay now:
        ``(total, insurance-fund part)`` under the fee policy and ramp."""
        return self._core.liquidation_fee_rate(self._acct(account), self._instr(instrument))

    def _named_spot(self, res: dict[str, Any]) -> dict[str, Any]:
        res["account"] = self._core.account_name(res["account"])
        res["liability"] = self._core.asset_name(res["liability"])
        res["asset"] = self._core.asset_name(res["asset"])
        return res

    def plan_spot_liquidation(self, account: str | int, liability: str | int,
                              asset: str | int) -> dict[str, Any]:
        """Drift's spot liquidation (liability transfer), planned: a liquidator
        takes over part of the account's borrow of ``liability`` for its deposit
        of ``asset``. ``to_cover``: liability units that cure the shortage (USD,
        target - equity), ``shortage / (price (lw - aw am / lm) - price if_fee
        lw)``, ``inf`` when no transfer can; ``liability_transfer``: that, limited
        by the borrow and what the deposit pays; ``asset_transfer``: deposit
        units handed over (``liability x price_l x am / (lm x price_a)``); weights
        (average, at the holdings), multipliers (``1 +/- liquidator_fee``),
        ``if_fee`` (rate, ``fee_policy="margin_implied"``) and ``fund_fee``
        (liability units). Nothing changes."""
        return self._named_spot(self._core.plan_spot_liquidation(
            self._acct(account), self._asset(liability), self._asset(asset)))

    def liquidate_spot(self, account: str | int, liability: str | int,
                       asset: str | int) -> dict[str, Any]:
        """Executes :meth:`plan_spot_liquidation`: the borrow shrinks by the
        transfer less the fund fee (paid to the insurance fund in the liability
        asset), the deposit by ``asset_transfer``; the liquidator's gain at the
        prices is booked to :meth:`market_pnl`."""
        return self._named_spot(self._core.liquidate_spot(
            self._acct(account), self._asset(liability), self._asset(asset)))

    def spot_cure(self, account: str | int) -> list[dict[str, Any]]:
        """Spot liquidations of an account below its target, one at a time (what
        :meth:`cascade` does after an account's position steps): the largest
        borrow first (USD value; ties: lower asset id) that some deposit can
        pay, with the deposit whose planned transfer takes over the most of it
        (ties: lower asset id), each sized by :meth:`plan_spot_liquidation` and
        executed by :meth:`liquidate_spot`, until a transfer sized to cure the
        shortage (``to_cover``) restores the account or nothing more can be
        transferred; each (liability, asset) pair is used at most once (no
        tails of rounding- or fee-sized transfers). Returns the transfers, in order
        (empty when the account is not below its target)."""
        return [self._named_spot(s) for s in self._core.spot_cure(self._acct(account))]

    def fund_insurance(self, asset: str | int, amount: float) -> None:
        """Adds ``amount`` to the insurance fund in ``asset``."""
        self._core.fund_insurance(self._asset(asset), _finite("amount", amount, positive=True))

    def insurance_fund(self, asset: str | int) -> float:
        """The insurance fund's balance in ``asset``."""
        return self._core.insurance_fund(self._asset(asset))

    def market_pnl(self, asset: str | int) -> float:
        """What the market gained against the mark on liquidation fills of accounts
        margined in ``asset`` (the slippage they paid)."""
        return self._core.market_pnl(self._asset(asset))

    def socialized(self, asset: str | int) -> float:
        """Losses written off in ``asset`` because neither the fund nor ADL covered them."""
        return self._core.socialized(self._asset(asset))

    def bankruptcy_price(self, account: str | int, instrument: str | int) -> float:
        """The price at which closing the whole position leaves the account with
        exactly zero equity (NaN without a position)."""
        return self._core.bankruptcy_price(self._acct(account), self._instr(instrument))

    def _named_plan(self, plan: dict[str, Any]) -> dict[str, Any]:
        plan["account"] = self._core.account_name(plan["account"])
        for step in plan["steps"]:
            step["instrument"] = self._core.instrument_name(step["instrument"])
        return plan

    def plan_liquidation(self, account: str | int) -> dict[str, Any]:
        """The liquidation plan of an account (nothing is executed).

        Steps, in order: ``cancel_orders`` first, then ``reduce`` / ``close`` of
        positions, each chosen for the requirement it releases per unit of
        expected cost (slippage from :meth:`set_liquidity` plus the penalty), sized
        exactly to restore the target (partial first; a whole close only when
        partial steps cannot), limited by ``max_step``; ties go to the lower
        instrument id; never a step that raises the requirement (in portfolio
        mode a hedge leg is never closed if that hurts). Each step says why in
        ``reason``. Also: equity and requirement before and after, ``restored``.
        """
        return self._named_plan(self._core.plan_liquidation(self._acct(account)))

    def liquidate(self, account: str | int, *, spot: bool = False) -> dict[str, Any]:
        """Executes the plan: fills at the expected prices, penalties to the
        insurance fund; a fill that would leave negative equity is paid by the
        fund, or, when the fund cannot, taken by auto-deleveraging of opposite
        positions at the bankruptcy price (ranked by :meth:`adl_ranking`); what is
        left is socialised. With ``spot``, the steps are followed by
        :meth:`spot_cure` before the bad debt is settled (as in :meth:`cascade`).
        Returns the plan and ``fees_to_fund``, ``bad_debt``,
        ``fund_paid``, ``adl_volume`` (contracts), ``adl_notional`` (USD),
        ``adl_accounts``, ``market_fills`` (instrument, qty actually sent to the
        market), ``socialized`` (margin asset unless said), ``spot`` (the spot
        transfers, as :meth:`liquidate_spot` returns them; empty without
        ``spot``)."""
        res = self._core.liquidate(self._acct(account), bool(spot))
        self._named_plan(res["plan"])
        res["spot"] = [self._named_spot(s) for s in res["spot"]]
        res["adl_accounts"] = [self._core.account_name(i) for i in res["adl_accounts"]]
        res["market_fills"] = [(self._core.instrument_name(i), q) for i, q in res["market_fills"]]
        return res

    def adl_ranking(self, instrument: str | int, side: str) -> list[str]:
        """Accounts holding the opposite of ``side`` ("long" / "short": the side
        being liquidated) of the instrument, first to be deleveraged first:
        profitable ones by P&L% x effective leverage (BitMEX), then losing ones
        by P&L% / leverage; ties by account id. P&L% = unrealised P&L / entry
        notional; effective leverage = notional at mark / equity."""
        code = {"long": 1, "short": -1}.get(side)
        if code is None:
            raise ValueError(f"side must be 'long' or 'short', got {side!r}")
        return [self._core.account_name(i)
                for i in self._core.adl_ranking(self._instr(instrument), code)]

    def plan_all(self) -> list[dict[str, Any]]:
        """Every account at or below the liquidation threshold with its plan, in
        one batch pass (threads, GIL released). ``needs_spot`` in a plan: its
        steps leave the account below its target while it holds a borrow and a
        deposit in another asset; :meth:`cascade` (or ``liquidate(spot=True)``)
        then continues with spot transfers (:meth:`spot_cure`). The transfers
        are not planned here: each is sized on the account as the steps leave
        it, by :meth:`plan_spot_liquidation`."""
        return [self._named_plan(p) for p in self._core.plan_all()]

    def move_underlying(self, underlying: str | int, price: float) -> None:
        """Moves an underlying's price and every mark that follows it (futures
        keep their basis ratio; options are repriced at their volatility)."""
        self._core.move_underlying(self._asset(underlying), _finite("price", price, positive=True))

    def cascade(self, underlying: str | int, shock: float, *, impact: float = 0.0,
                max_rounds: int = 20) -> list[dict[str, Any]]:
        """Stress: move ``underlying`` by ``shock`` (-0.2 = -20 %), liquidate every
        account in breach, let the liquidated volume move the price
        (``impact`` x net units sold, as a fraction of the price), and repeat to
        a fixed point or ``max_rounds``. Each account's plan is executed, then,
        if it is still below its target, spot transfers of its borrows for its
        deposits (:meth:`spot_cure`), then its bad debt is settled; spot
        transfers do not move the price. Per round: ``liquidated`` accounts,
        ``volume`` (units of the underlying), ``price`` after the round, and in
        USD: ``bad_debt``, ``fund`` (the insurance fund's value), ``adl_volume``
        (notional deleveraged), ``socialized``; ``spot_transfers`` (count) and
        ``spot_value`` (USD, the liabilities taken over at the prices)."""
        return self._core.cascade(self._asset(underlying), _finite("shock", shock),
                                  _finite("impact", impact, nonneg=True), int(max_rounds))

    # ---- isolated margin -----------------------------------------------------------
    def open_isolated(self, account: str | int, instrument: str | int, amount: float) -> int:
        """Opens an isolated position account ``"<account>/<instrument>"`` funded
        with ``amount`` of the parent's margin asset; returns its id.

        The isolated account trades only that instrument, on its own collateral:
        its losses never reach the parent's pool. Raises ValueError if the
        transfer would uncover the parent's initial margin (nothing changes).
        """
        child, why = self._core.open_isolated(self._acct(account), self._instr(instrument),
                                              _finite("amount", amount, positive=True))
        if child < 0:
            raise ValueError(f"cannot fund the isolated position: {why}")
        self._accounts[self._core.account_name(child)] = child
        return child

    def transfer(self, source: str | int, target: str | int, amount: float) -> str:
        """Moves margin-asset collateral between an account and its isolated
        sub-account; returns ``"ok"`` or why it was refused (nothing changes)."""
        return self._core.transfer(self._acct(source), self._acct(target),
                                   _finite("amount", amount, positive=True))

    def margin_asset(self, account: str | int) -> str:
        """The asset an account measures its equity and requirements in."""
        return self._core.asset_name(self._core.account_margin_asset(self._acct(account)))

    def parent(self, account: str | int) -> str | None:
        """The cross account funding an isolated account (None for cross accounts)."""
        pid = self._core.parent_of(self._acct(account))
        return None if pid < 0 else self._core.account_name(pid)

    # ---- market -----------------------------------------------------------------
    def set_price(self, asset: str | int, price: float, time: float | None = None) -> bool:
        """Sets an asset's USD price observed at ``time`` (default: :attr:`now`).

        Returns False (and changes nothing) if a newer price is already held:
        an out-of-order update never replaces fresher data.
        """
        t = self.now if time is None else _finite("time", time)
        return self._core.set_price(self._asset(asset), _finite("price", price, positive=True), t)

    def set_mark(self, instrument: str | int, mark: float, time: float | None = None) -> bool:
        """Sets an instrument's mark price observed at ``time`` (see :meth:`set_price`)."""
        t = self.now if time is None else _finite("time", time)
        return self._core.set_mark(self._instr(instrument), _finite("mark", mark), t)

    def set_marks(self, marks: dict[str, float], time: float | None = None) -> None:
        """Sets several marks at once: ``{instrument: mark}``."""
        for name, value in marks.items():
            self.set_mark(name, value, time)

    def set_forward(self, underlying: str | int, expiry: Any, forward: float,
                    time: float | None = None) -> bool:
        """Sets the forward of ``underlying`` for ``expiry`` (UTC datetime or unix
        seconds), in USD. Without one, a dated future's mark on that expiry is
        used. Linear options see it in their settlement asset (divided by its
        price)."""
        t = self.now if time is None else _finite("time", time)
        return self._core.set_forward(self._asset(underlying), _epoch(expiry),
                                      _finite("forward", forward, positive=True), t)

    def forward(self, underlying: str | int, expiry: Any) -> float:
        """The forward set for ``underlying`` and ``expiry`` (NaN if none)."""
        return self._core.forward(self._asset(underlying), _epoch(expiry))

    def set_vol(self, option: str | int, vol: float, time: float | None = None) -> bool:
        """Sets an option's implied volatility; its mark becomes the Black-76 price
        on the expiry's forward at :attr:`rate` (in coin for inverse options),
        observed at the older of ``time`` and the forward's time."""
        t = self.now if time is None else _finite("time", time)
        return self._core.set_vol(self._instr(option), _finite("vol", vol, nonneg=True), t)

    def set_vols(self, vols: dict[str, float], time: float | None = None) -> None:
        """Sets several implied volatilities: ``{option: vol}``."""
        for name, vol in vols.items():
            self.set_vol(name, vol, time)

    @property
    def rate(self) -> float:
        """The continuously compounded rate used to price options from volatilities."""
        return self._core.rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._core.rate = _finite("rate", value)

    def price(self, asset: str | int) -> float:
        """An asset's USD price (NaN if never set)."""
        return self._core.price(self._asset(asset))

    def mark(self, instrument: str | int) -> float:
        """An instrument's mark (NaN if never set)."""
        return self._core.mark(self._instr(instrument))

    @property
    def now(self) -> float:
        """The engine's clock (unix seconds): staleness and expiry are judged against it."""
        return self._core.now

    @now.setter
    def now(self, value: float) -> None:
        self._core.now = _finite("now", value)

    @property
    def max_age(self) -> float:
        """Prices older than this (seconds) may not approve risk-increasing orders."""
        return self._core.max_age

    @max_age.setter
    def max_age(self, seconds: float) -> None:
        x = float(seconds)
        if not x > 0:
            raise ValueError(f"max_age must be > 0 (got {x})")
        self._core.max_age = x

    def set_thresholds(self, warning: float = 1.5, reduce_only: float = 1.2,
                       liquidation: float = 1.0) -> None:
        """Health thresholds as multiples of MM (equity below ``liquidation x MM``
        is ``liquidation``, and so on; negative equity is ``bankrupt``)."""
        self._core.set_thresholds(float(warning), float(reduce_only), float(liquidation))

    # ---- account operations -------------------------------------------------------
    def deposit(self, account: str | int, asset: str | int, amount: float) -> None:
        """Credits ``amount`` (> 0) of ``asset``."""
        self._core.deposit(self._acct(account), self._asset(asset),
                           _finite("amount", amount, positive=True))

    def withdraw(self, account: str | int, asset: str | int, amount: float) -> str:
        """Debits ``amount`` if the account keeps its initial margin covered.

        Returns ``"ok"``, or the reason it was refused (``insufficient_balance``,
        ``insufficient_margin``, ``no_price``); a refusal changes nothing.
        """
        return self._core.withdraw(self._acct(account), self._asset(asset),
                                   _finite("amount", amount, positive=True))

    def fill(self, account: str | int, instrument: str | int, qty: float, price: float,
             fee: float | None = None) -> None:
        """Books a trade of signed ``qty`` at ``price``: the position's size and
        average entry, realised P&L (futures) or premium (options) to the
        settlement balance, and the fee (default: the instrument's taker fee)."""
        self._core.fill(self._acct(account), self._instr(instrument), _finite("qty", qty),
                        _finite("price", price), -1.0 if fee is None else
                        _finite("fee", fee, nonneg=True))

    def place_order(self, account: str | int, instrument: str | int, qty: float,
                    price: float) -> int:
        """Rests an order (signed qty); it counts toward IM until filled or cancelled.
        Returns the order id. Check it first with :meth:`check_order`."""
        return self._core.place_order(self._acct(account), self._instr(instrument),
                                      _finite("qty", qty), _finite("price", price, nonneg=True))

    def cancel_order(self, order_id: int) -> None:
        """Removes a resting order."""
        self._core.cancel_order(int(order_id))

    def fill_order(self, order_id: int, qty: float, price: float, fee: float | None = None) -> None:
        """Fills ``qty`` (> 0, at most what remains) of a resting order at ``price``."""
        self._core.fill_order(int(order_id), _finite("qty", qty, positive=True),
                              _finite("price", price), -1.0 if fee is None else
                              _finite("fee", fee, nonneg=True))

    def balance(self, account: str | int, asset: str | int) -> float:
        """An account's balance of an asset."""
        return self._core.balance(self._acct(account), self._asset(asset))

    def positions(self, account: str | int) -> list[dict[str, Any]]:
        """An account's positions: instrument, size, entry, resting bids and asks."""
        return [
            {"instrument": self._core.instrument_name(i), "size": q, "entry": e, "bids": b,
             "asks": a}
            for i, q, e, b, a in self._core.positions(self._acct(account))
        ]

    # ---- evaluation ---------------------------------------------------------------
    def summary(self, account: str | int) -> AccountSummary:
        """Equity, IM, MM, available margin, margin ratio, health state, staleness."""
        return self._core.summary(self._acct(account))

    def attribution(self, account: str | int) -> list[PositionRisk]:
        """Each position's mark, IM, MM and equity contribution (margin asset)."""
        return self._core.attribution(self._acct(account))

    def net_greeks(self, account: str | int) -> dict[str, dict[str, float]]:
        """Net Greeks per underlying of the positions' USD value: ``delta``
        (units of the underlying), ``gamma`` (per unit per USD), ``vega`` (USD per
        1.00 of vol), ``theta`` (USD per year). Futures contribute delta only
        (inverse: face value / entry); options are taken with Black-76 on their
        expiry's forward (the index if none) at :attr:`rate`, at their own
        volatility (:meth:`set_vol`, else implied by their mark)."""
        return {
            self._core.asset_name(u): {"delta": d, "gamma": g, "vega": v, "theta": t}
            for u, d, g, v, t in self._core.net_greeks(self._acct(account))
        }

    def check_order(self, account: str | int, instrument: str | int, qty: float,
                    price: float) -> OrderCheck:
        """May ``account`` trade signed ``qty`` of ``instrument`` at ``price``?

        Returns an :class:`OrderCheck` (``accepted``, ``reason``, ``im_after``,
        ``mm_after``, ``equity_after``, ``available_after``); bad arguments give a
        rejection with a reason code, never an exception. Incremental: only the
        order's instrument is re-evaluated. ``equity_after`` is what the account
        would hold after the fill (cash on haircut balances included); for the
        decision, an immediate gain against the mark is not counted (Binance's
        "open loss": a price better than the mark never approves an order).
        Orders that increase risk need that counted available margin ``>= 0``,
        fresh prices and a state better than reduce-only; orders that reduce the
        position pass unless they make available margin worse than it is (or
        below zero).
        """
        if account.__class__ is int and -2147483648 <= account <= 2147483647:
            a = account
        else:
            a = _loose_id(self._accounts, account)
        if instrument.__class__ is int and -2147483648 <= instrument <= 2147483647:
            i = instrument
        else:
            i = _loose_id(self._instruments, instrument)
        return self._core.check_order(a, i, qty, price)

    def max_order_size(self, account: str | int, instrument: str | int, side: str | int,
                       price: float) -> float:
        """The largest quantity (>= 0) of a buy or sell at ``price`` that
        :meth:`check_order` accepts together with every smaller quantity, exact to
        the last bit across bracket edges. For every measure but VaR the accepted
        sizes form one interval from zero, so this is the largest accepted size;
        VaR is not convex and can accept again beyond a rejected region, which is
        never offered. In portfolio mode with worst-loss sets the boundary is
        solved in closed form (the requirement is piecewise linear in the order
        size). ``inf`` if margin never binds."""
        s = {"buy": 1, "sell": -1, 1: 1, -1: -1}.get(side)
        if s is None:
            raise ValueError(f"side must be 'buy', 'sell', +1 or -1, got {side!r}")
        return self._core.max_order_size(self._acct(account), self._instr(instrument), s,
                                         _finite("price", price, nonneg=True))

    def liquidation_prices(self, account: str | int,
                           underlying: str | int | None = None) -> tuple[float, float]:
        """The prices of ``underlying`` at which the account reaches liquidation
        (equity = liquidation threshold x MM), nearest below and above today's
        price (NaN where none within 1e-6x to 1e6x; today's price if it is
        already there). The search walks out in 1 % steps within a factor of 2
        of today's price and 25 % steps beyond, then bisects the crossing it
        finds. Default underlying: the account's largest exposure.
        Futures keep their basis ratio, options are repriced with Black-76 at
        their implied volatility, collateral in the underlying is revalued; the
        crossing is exact across tiers (to the last bit)."""
        aid = self._acct(account)
        if underlying is None:
            uid = self._core.dominant_underlying(aid)
            if uid < 0:
                return (math.nan, math.nan)
        else:
            uid = self._asset(underlying)
        return self._core.liquidation_prices(aid, uid)

    def liquidation_prices_all(self) -> tuple[list[str | None], np.ndarray, np.ndarray]:
        """:meth:`liquidation_prices` of every account along its dominant
        underlying, on the thread pool (GIL released): ``(underlying, below,
        above)``, the underlying names (None without positions) and two float64
        arrays by account id (NaN where there is none)."""
        uids, below, above = self._core.liquidation_prices_all()
        names = self.assets
        return [names[u] if u >= 0 else None for u in uids.tolist()], below, above

    def dominant_underlying(self, account: str | int) -> str | None:
        """The underlying of the account's largest exposure (gross USD notional of
        its positions), the default of :meth:`liquidation_prices`; None without
        positions."""
        uid = self._core.dominant_underlying(self._acct(account))
        return None if uid < 0 else self._core.asset_name(uid)

    def evaluate_all(self) -> BookEvaluation:
        """Every account in one call (threads, GIL released): equity, IM, MM,
        available margin and health-state codes as arrays in account-id order,
        equal to each account's :meth:`summary` to the bit (NaN figures for an
        account some price it needs is missing for).

        The pass reads a compact copy of the accounts (positions as columns),
        which every change to an account marks stale; the call first repacks
        the accounts changed since the last pass (or rebuilds the copy when a
        quarter of them changed), so its cost after a market move is the
        evaluation alone."""
        return BookEvaluation(*self._core.evaluate_all())

    def state_names(self, codes: Sequence[int]) -> list[str]:
        """Health-state names of :attr:`BookEvaluation.state` codes."""
        return [HEALTH_STATES[int(c)] for c in codes]
