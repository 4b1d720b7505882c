"""Baselines for the engine benchmarks: the code a user would write without marginkit.

* :class:`PyPreTradeChecker`: an incremental pre-trade check in plain Python (no
  NumPy per call). Per account it caches the sums of IM, MM and position equity
  and each position's requirement; a check recomputes only the order's
  instrument, with the same formulas, rounding and decision rules as
  ``Engine.check_order`` for linear perpetuals and futures (including the "open
  loss" rule: an immediate gain against the mark does not count toward approval).
* :func:`numpy_evaluate`: every account of a book in column form at once
  (positions as flat arrays sorted by account, per-instrument marks and model
  parameters, ``np.searchsorted`` for brackets, ``np.add.reduceat`` per account).

Models are plain tuples: ``(LINEAR, im_base, im_slope, mm_base, mm_slope)`` or
``(TIERED, floors, imr, mmr, cum_im, cum_mm)`` (lists; see :func:`tiered_model`).
Amounts round like the engine's (``margin.cpp``): requirements up and equity down
to a decimal quantum ``1 / inv``, forgiving float error of ``1e-14 |n|`` quanta
(``n = x / quantum``), the result taken as ``n / inv``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

LINEAR, TIERED = 0, 1
HEALTHY, WARNING, REDUCE_ONLY, LIQUIDATION, BANKRUPT = range(5)


def linear_model(im_base: float, im_slope: float, mm_base: float, mm_slope: float) -> tuple:
    return (LINEAR, im_base, im_slope, mm_base, mm_slope)


def tiered_model(brackets: list[tuple[float, float, float]]) -> tuple:
    """``brackets``: ``(floor, mmr, imr)`` from floor 0; derives the cumulative
    deductions that keep IM and MM continuous at the floors."""
    floors, mmr, imr, cum_im, cum_mm = [], [], [], [], []
    for k, (floor, m, i) in enumerate(brackets):
        if k == 0:
            ci = cm = 0.0
        else:
            ci = floor * (i - imr[-1]) + cum_im[-1]
            cm = floor * (m - mmr[-1]) + cum_mm[-1]
        floors.append(float(floor))
        mmr.append(float(m))
        imr.append(float(i))
        cum_im.append(ci)
        cum_mm.append(cm)
    return (TIERED, floors, imr, mmr, cum_im, cum_mm)


# ---- plain Python, one account at a time ---------------------------------------


def requirement(model: tuple, cs: float, q: float, mark: float, index: float):
    """(IM, MM) of a linear position of signed ``q`` contracts, settlement currency."""
    if q == 0.0:
        return 0.0, 0.0
    aq = q if q > 0.0 else -q
    if model[0] == LINEAR:
        _, ib, isl, mb, msl = model
        size = aq * cs
        return size * (ib + isl * size) * index, size * (mb + msl * size) * index
    _, floors, imr, mmr, cum_im, cum_mm = model
    n = aq * cs * mark
    k = bisect_right(floors, n) - 1
    return n * imr[k] - cum_im[k], n * mmr[k] - cum_mm[k]


def requirement_with_orders(model, cs, q, bids, asks, mark, index):
    """The position's requirement with its resting orders at their worst case."""
    im, mm = requirement(model, cs, q, mark, index)
    if bids > 0.0:
        b = requirement(model, cs, q + bids, mark, index)[0]
        if b > im:
            im = b
    if asks > 0.0:
        a = requirement(model, cs, q - asks, mark, index)[0]
        if a > im:
            im = a
    return im, mm


def _inv(quantum: float) -> float:
    inv = 1.0 / quantum
    if not (quantum > 0.0 and inv == round(inv)):
        raise ValueError("the baselines take a decimal quantum (1 / quantum an integer)")
    return inv


def round_up(x: float, quantum: float) -> float:
    n = x / quantum
    return math.ceil(n - abs(n) * 1e-14) / _inv(quantum)


def round_down(x: float, quantum: float) -> float:
    n = x / quantum
    return math.floor(n + abs(n) * 1e-14) / _inv(quantum)


def health(equity: float, mm: float, has_risk: bool, thresholds: tuple) -> int:
    warning, reduce_only, liquidation = thresholds
    if equity < 0.0 or (has_risk and equity == 0.0 and mm > 0.0):
        return BANKRUPT
    if mm <= 0.0:
        return HEALTHY
    if equity < liquidation * mm:
        return LIQUIDATION
    if equity < reduce_only * mm:
        return REDUCE_ONLY
    if equity < warning * mm:
        return WARNING
    return HEALTHY


class _Account:
    __slots__ = ("base_equity", "floor_reducing", "oldest", "positions", "reduce_only",
                 "sum_im", "sum_mm")


class PyPreTradeChecker:
    """Incremental pre-trade checks of cross-margin accounts, in plain Python.

    ``instruments``: ``{name: (model, contract_size, mark, index, taker_fee,
    expiry, price_time)}`` (linear, settled in the accounts' margin asset;
    ``expiry`` 0 for perpetuals; ``price_time`` the oldest observation time of
    the prices the instrument uses). ``check_order`` returns ``(accepted, reason,
    im_after, mm_after, equity_after, available_after)``.
    """

    def __init__(self, instruments: dict[str, tuple], *, quantum: float, now: float,
                 max_age: float, thresholds: tuple = (1.5, 1.2, 1.0)) -> None:
        self._instruments = dict(instruments)
        self._accounts: dict[str, _Account] = {}
        self.quantum = quantum
        self._inv = _inv(quantum)
        self.now = now
        self.max_age = max_age
        self.thresholds = thresholds

    def add_account(self, name: str, collateral: float, positions, collateral_time: float):
        """``positions``: ``[(instrument, size, entry, bids, asks), ...]``, in
        the order the account holds them. Computes and caches the sums."""
        qm = self.quantum
        acct = _Account()
        acct.positions = {}
        sum_im = sum_mm = sum_eq = 0.0
        oldest = collateral_time
        for instrument, size, entry, bids, asks in positions:
            model, cs, mark, index, _fee, _expiry, ptime = self._instruments[instrument]
            im, mm = requirement_with_orders(model, cs, size, bids, asks, mark, index)
            acct.positions[instrument] = (size, bids, asks, im, mm)
            sum_im += im
            sum_mm += mm
            sum_eq += size * cs * (mark - entry) if size != 0.0 else 0.0
            oldest = min(oldest, ptime)
        acct.sum_im, acct.sum_mm, acct.oldest = sum_im, sum_mm, oldest
        acct.base_equity = collateral + sum_eq
        eq_before = round_down(acct.base_equity, qm)
        im_before = round_up(sum_im, qm)
        mm_before = round_up(sum_mm, qm)
        state = health(eq_before, mm_before, bool(positions), self.thresholds)
        acct.reduce_only = state >= REDUCE_ONLY
        acct.floor_reducing = min(0.0, eq_before - im_before)
        self._accounts[name] = acct

    def check_order(self, account, instrument, qty, price):
        acct = self._accounts.get(account)
        if acct is None:
            return (False, "unknown_account", 0.0, 0.0, 0.0, 0.0)
        ins = self._instruments.get(instrument)
        if ins is None:
            return (False, "unknown_instrument", 0.0, 0.0, 0.0, 0.0)
        if not (math.isfinite(qty) and qty != 0.0):
            return (False, "invalid_quantity", 0.0, 0.0, 0.0, 0.0)
        if not (math.isfinite(price) and price > 0.0):
            return (False, "invalid_price", 0.0, 0.0, 0.0, 0.0)
        model, cs, mark, index, fee_rate, expiry, ptime = ins
        if expiry and expiry <= self.now:
            return (False, "instrument_expired", 0.0, 0.0, 0.0, 0.0)
        pos = acct.positions.get(instrument)
        if pos is None:
            q = bids = asks = im0 = mm0 = 0.0
        else:
            q, bids, asks, im0, mm0 = pos
        q_new = q + qty
        increases = abs(q_new) > abs(q) or q * q_new < 0.0
        if increases and min(acct.oldest, ptime) < self.now - self.max_age:
            return (False, "stale_price", 0.0, 0.0, 0.0, 0.0)
        im1, mm1 = requirement_with_orders(model, cs, q_new, bids, asks, mark, index)
        mtm = qty * cs * (mark - price)  # the trade's immediate P&L against the mark
        d_equity = mtm - fee_rate * (abs(qty) * cs * price)
        # round_down / round_up, inlined
        qm, inv = self.quantum, self._inv
        n = (acct.base_equity + d_equity) / qm
        equity_after = math.floor(n + abs(n) * 1e-14) / inv
        n = (acct.sum_im + (im1 - im0)) / qm
        im_after = math.ceil(n - abs(n) * 1e-14) / inv
        n = (acct.sum_mm + (mm1 - mm0)) / qm
        mm_after = math.ceil(n - abs(n) * 1e-14) / inv
        available = equity_after - im_after
        if increases and acct.reduce_only:
            return (False, "reduce_only", im_after, mm_after, equity_after, available)
        # "open loss": a gain against the mark never approves an order
        if mtm > 0.0:
            n = (acct.base_equity + d_equity - mtm) / qm
            counted = math.floor(n + abs(n) * 1e-14) / inv - im_after
        else:
            counted = available
        ok = counted >= (0.0 if increases else acct.floor_reducing)
        return (ok, "ok" if ok else "insufficient_margin", im_after, mm_after, equity_after,
                available)


# ---- NumPy, the whole book at once -------------------------------------------------


@dataclass
class ColumnBook:
    """A book in column form. Positions: flat arrays sorted by account (``starts``:
    the first position of each account). Instruments: per-instrument marks,
    index prices, contract sizes and model parameters; ``linear_pos`` and
    ``tiered_pos`` (one index array per tiered model) group the positions by
    model (static: they change only when positions do)."""

    starts: np.ndarray  # per account, int64
    counts: np.ndarray  # positions per account
    collateral: np.ndarray  # per account, margin asset
    instrument: np.ndarray  # per position
    size: np.ndarray
    entry: np.ndarray
    mark: np.ndarray  # per instrument
    index: np.ndarray
    contract_size: np.ndarray
    im_base: np.ndarray
    im_slope: np.ndarray
    mm_base: np.ndarray
    mm_slope: np.ndarray
    tables: list  # per tiered model: (floors, imr, mmr, cum_im, cum_mm) arrays
    linear_pos: np.ndarray
    linear_instrument: np.ndarray
    tiered_pos: list  # per tiered model: position indices
    quantum: float
    thresholds: tuple = (1.5, 1.2, 1.0)


def column_book(*, account, instrument, size, entry, collateral, models, model_of,
                mark, index, contract_size, quantum) -> ColumnBook:
    """Builds a :class:`ColumnBook` from positions sorted by ``account`` (ids
    0..n-1), per-instrument arrays and ``models[model_of[i]]`` tuples."""
    n_acct = len(collateral)
    counts = np.bincount(account, minlength=n_acct)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    lin = [i for i, m in enumerate(model_of) if models[m][0] == LINEAR]
    par = np.zeros((4, len(model_of)))
    for i in lin:
        par[:, i] = models[model_of[i]][1:]
    tiered_ids = sorted({m for m in model_of if models[m][0] == TIERED})
    inst_model = np.asarray(model_of)[instrument]
    linear_pos = np.flatnonzero(np.isin(instrument, lin))
    return ColumnBook(
        starts=starts, counts=counts, collateral=np.asarray(collateral, dtype=np.float64),
        instrument=instrument, size=size, entry=entry,
        mark=np.asarray(mark, dtype=np.float64), index=np.asarray(index, dtype=np.float64),
        contract_size=np.asarray(contract_size, dtype=np.float64),
        im_base=par[0], im_slope=par[1], mm_base=par[2], mm_slope=par[3],
        tables=[tuple(np.asarray(x) for x in models[m][1:]) for m in tiered_ids],
        linear_pos=linear_pos, linear_instrument=instrument[linear_pos],
        tiered_pos=[np.flatnonzero(inst_model == m) for m in tiered_ids],
        quantum=quantum)


def numpy_evaluate(b: ColumnBook):
    """Equity, IM, MM, available and health-state codes of every account."""
    inst = b.instrument
    mark = b.mark[inst]
    signed_units = b.size * b.contract_size[inst]
    units = np.abs(signed_units)
    pos_equity = signed_units * (mark - b.entry)
    im = np.empty_like(units)
    mm = np.empty_like(units)
    # linear_rate: rate = base + slope x size in underlying units, valued at the index
    li, lin = b.linear_pos, b.linear_instrument
    u = units[li]
    idx = b.index[lin]
    im[li] = u * (b.im_base[lin] + b.im_slope[lin] * u) * idx
    mm[li] = u * (b.mm_base[lin] + b.mm_slope[lin] * u) * idx
    # tiered: the bracket of the notional
    for (floors, imr, mmr, cum_im, cum_mm), pos in zip(b.tables, b.tiered_pos, strict=True):
        n = units[pos] * mark[pos]
        k = np.searchsorted(floors, n, side="right") - 1
        im[pos] = n * imr[k] - cum_im[k]
        mm[pos] = n * mmr[k] - cum_mm[k]
    # per account
    has = b.counts > 0
    n_acct = len(b.counts)
    sums = []
    for x in (im, mm, pos_equity):
        s = np.zeros(n_acct)
        s[has] = np.add.reduceat(x, b.starts[has])
        sums.append(s)
    q, inv = b.quantum, _inv(b.quantum)
    n = (b.collateral + sums[2]) / q
    equity = np.floor(n + np.abs(n) * 1e-14) / inv
    n = sums[0] / q
    im_acct = np.ceil(n - np.abs(n) * 1e-14) / inv
    n = sums[1] / q
    mm_acct = np.ceil(n - np.abs(n) * 1e-14) / inv
    available = equity - im_acct
    warning, reduce_only, liquidation = b.thresholds
    state = np.select(
        [(equity < 0.0) | (has & (equity == 0.0) & (mm_acct > 0.0)),
         mm_acct <= 0.0,
         equity < liquidation * mm_acct,
         equity < reduce_only * mm_acct,
         equity < warning * mm_acct],
        [BANKRUPT, HEALTHY, LIQUIDATION, REDUCE_ONLY, WARNING], HEALTHY).astype(np.int8)
    return equity, im_acct, mm_acct, available, state
