"""``mlfactory serve``: a bundle behind HTTP (FastAPI on uvicorn), predicting from raw bars as they close.

The service keeps, per symbol, the last bars it received: as many as the bundle's measured warm-up
needs (``ModelBundle.required_history``, plus the window of a sequence model), so a client may send
one bar at a time. Each request is checked whole before anything changes: bars of a symbol must come
in time order, after the last bar already received, with no duplicates, unknown fields or non-finite
values; a bad request gets a 4xx with a one-line reason and leaves every symbol's state as it was.
Predictions are computed by :meth:`ModelBundle.predict_bars` on the kept bars plus the new ones, so
streamed predictions equal batch ones (docs/inference.md, "Serving").

FastAPI and uvicorn are the ``serve`` extra (``pip install 'mlfactory[serve]'``); they load only here.
"""

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlfactory.data.contract import RAW_BAR_COLUMNS
from mlfactory.errors import ConfigError, MLFactoryError
from mlfactory.inference.bars import predict_arrays

if TYPE_CHECKING:
    from mlfactory.inference.bundle import ModelBundle

INSTALL_HINT = "mlfactory serve needs FastAPI and uvicorn: pip install 'mlfactory[serve]'"
MAX_BARS_PER_REQUEST = 10_000
DEFAULT_MAX_SYMBOLS = 1_000
MAX_SYMBOL_LENGTH = 64


class RequestError(MLFactoryError):
    """A request the service refuses (HTTP 4xx); the message is the one-line reason."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def require_server_stack() -> None:
    """Raise the one-line install hint when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


@dataclass
class _History:
    """One symbol's last bars, as received (before gap filling): int64 ns times and (n, 5) OHLCV."""

    times: np.ndarray
    values: np.ndarray


class BarService:
    """The state and logic of the service, without HTTP: bounded per-symbol history and predictions.

    Args:
        bundle: a loaded bundle with a recipe (``bundle.has_recipe``).
        max_symbols: refuse bars of a new symbol beyond this many (the state is bounded).
    """

    def __init__(self, bundle: "ModelBundle", max_symbols: int = DEFAULT_MAX_SYMBOLS) -> None:
        bundle.recipe  # a bundle without a recipe cannot serve raw bars: its one-line error
        self.bundle = bundle
        self.max_symbols = max_symbols
        extra = bundle.seq_len - 1 if bundle.view.windowed else 0
        self.keep = bundle.required_history + extra + 1  # bars kept per symbol: enough for the next bar
        self.history: dict[str, _History] = {}
        self.lock = threading.Lock()
        self.bundle_sha256 = hashlib.sha256((bundle.path / "manifest.json").read_bytes()).hexdigest()

    def health(self) -> dict[str, Any]:
        """What is served: model, bundle hash, versions, history needed and symbols held."""
        spec = self.bundle.spec
        return {
            "status": "ok",
            "model": self.bundle.model_name,
            "bundle": str(self.bundle.path),
            "bundle_sha256": self.bundle_sha256,
            "signed_by": self.bundle.signed_by,
            "input_kind": self.bundle.input_kind,
            "base_resolution": self.bundle.recipe.base_resolution,
            "required_history": self.bundle.required_history,
            "bars_kept_per_symbol": self.keep,
            "symbols": len(self.history),
            "versions": spec.get("versions", {}),
        }

    def predict(self, bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A prediction for each bar of ``bars`` (dicts with datetime, symbol and OHLCV), in request order.

        Raises:
            RequestError: the bars are out of order, duplicated, not after the symbol's last bar, not finite,
                or refused by prepare's checks; nothing was changed.
        """
        if not bars:
            raise RequestError("the request holds no bars; send {\"bars\": [{\"datetime\", \"symbol\", \"open\", ...}]}")
        if len(bars) > MAX_BARS_PER_REQUEST:
            raise RequestError(f"the request holds {len(bars):,} bars; send at most {MAX_BARS_PER_REQUEST:,} per request",
                               413)
        frame = _frame(bars)
        with self.lock:
            groups = self._check(frame)
            updates, results = {}, []
            for symbol, rows in groups.items():
                updates[symbol], predicted = self._predict_symbol(symbol, frame.iloc[rows])
                results.append((rows, predicted))
            for symbol, history in updates.items():  # every symbol succeeded: now the state changes
                self.history[symbol] = history
        out: list[dict[str, Any]] = [{}] * len(frame)
        for rows, predicted in results:
            for i, record in zip(rows, predicted):
                out[i] = record
        return out

    def _check(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        groups = {str(s): np.flatnonzero(frame["symbol"].to_numpy() == s) for s in pd.unique(frame["symbol"])}
        new = [s for s in groups if s not in self.history]
        if len(self.history) + len(new) > self.max_symbols:
            raise RequestError(f"the service holds {len(self.history)} symbols and the request adds {len(new)}; "
                               f"at most {self.max_symbols} are served (--max-symbols)", 409)
        for symbol, rows in groups.items():
            times = frame["_ns"].to_numpy()[rows]
            steps = np.diff(times)
            if (steps == 0).any():
                i = int(np.flatnonzero(steps == 0)[0]) + 1
                raise RequestError(f"bar {rows[i]} duplicates the bar of {symbol!r} at {_iso(times[i])}; send each bar once")
            if (steps < 0).any():
                i = int(np.flatnonzero(steps < 0)[0]) + 1
                raise RequestError(f"bar {rows[i]} ({symbol!r} at {_iso(times[i])}) is out of order: it comes after "
                                   f"{_iso(times[i - 1])}; send each symbol's bars in time order")
            held = self.history.get(symbol)
            if held is not None and len(held.times) and times[0] <= held.times[-1]:
                what = "duplicates" if times[0] in held.times else "is earlier than"
                raise RequestError(f"bar {rows[0]} ({symbol!r} at {_iso(times[0])}) {what} the last bar received for "
                                   f"{symbol!r} ({_iso(held.times[-1])}); send only bars after it", 409)
        return groups

    def _predict_symbol(self, symbol: str, new: pd.DataFrame) -> tuple[_History, list[dict[str, Any]]]:
        held = self.history.get(symbol, _History(np.zeros(0, np.int64), np.zeros((0, 5))))
        times = np.concatenate([held.times, new["_ns"].to_numpy()])
        values = np.concatenate([held.values, new[list(RAW_BAR_COLUMNS)].to_numpy(dtype=np.float64)])
        bars = pd.DataFrame(values, columns=list(RAW_BAR_COLUMNS))
        bars.insert(0, "symbol", symbol)
        bars.insert(0, "datetime", pd.to_datetime(times, unit="ns", utc=True))
        try:  # prepare's reader and checks, then the bundle's own raw-bar prediction
            loaded = self.bundle.recipe.load(bars)
            rows, probs, has_history = predict_arrays(self.bundle, loaded)
        except (MLFactoryError, ValueError) as err:  # pandas/numpy refusing a value: the request's fault too
            raise RequestError(f"bars of {symbol!r}: {_one_line(err)}") from None
        stamps = loaded.times[rows]
        wanted = new["_ns"].to_numpy()
        index = np.searchsorted(stamps, wanted)
        if (index >= len(stamps)).any() or (stamps[np.minimum(index, len(stamps) - 1)] != wanted).any():
            raise RequestError(f"bars of {symbol!r}: a bar was not predicted (repaired away by prepare's checks)")
        keep = slice(max(0, len(times) - self.keep), len(times))
        records = [_record(int(wanted[k]), symbol, probs[i], bool(has_history[i]), self.bundle.class_names,
                           self.bundle.class_labels) for k, i in enumerate(index)]
        return _History(times[keep].copy(), values[keep].copy()), records


def _frame(bars: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(bars, columns=["datetime", "symbol", *RAW_BAR_COLUMNS])
    try:  # nanoseconds, checked: a plain astype wraps dates outside 1677-2262 around silently
        stamps = pd.to_datetime(frame["datetime"], utc=True).dt.as_unit("ns")
    except (ValueError, OverflowError):  # pandas' OutOfBoundsDatetime is a ValueError
        raise RequestError("a bar's datetime is outside the years 1678-2261 that bars can hold; "
                           "send real bar times (UTC)") from None
    frame["_ns"] = stamps.dt.tz_localize(None).to_numpy().view(np.int64)
    frame["symbol"] = frame["symbol"].astype(str)
    return frame


def _record(ns: int, symbol: str, probs: np.ndarray, has: bool, class_names: list[str],
            class_labels: list[int]) -> dict[str, Any]:
    """One bar's answer; the class is the most probable one, as in :func:`predictor.output_frame`."""
    predicted = int(np.argmax(probs)) if has else None
    return {
        "datetime": _iso(ns),
        "symbol": symbol,
        "has_history": has,
        "class": predicted,
        "label": int(class_labels[predicted]) if has else None,
        "probabilities": {name: float(p) for name, p in zip(class_names, probs)} if has else None,
    }


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def create_app(services: "BarService | Mapping[str, BarService]") -> Any:
    """The FastAPI application: ``GET /health``, ``POST /predict`` and ``POST /predict/{name}``.

    ``services`` is one service, or several by name (``--bundle NAME=DIR`` repeated): each has its own
    state, ``POST /predict/{name}`` routes to one, and ``POST /predict`` works when there is only one.
    """
    require_server_stack()
    if isinstance(services, BarService):
        services = {services.bundle.model_name: services}
    services = dict(services)
    if not services:
        raise ConfigError("serve needs at least one bundle")
    import datetime as dt

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    class Bar(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
        datetime: dt.datetime
        symbol: str = Field(min_length=1, max_length=MAX_SYMBOL_LENGTH)
        open: float
        high: float
        low: float
        close: float
        volume: float

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        bars: list[Bar] = Field(max_length=MAX_BARS_PER_REQUEST)  # checked while parsing, not after

    app = FastAPI(title="mlfactory serve", version=_version(),
                  description=f"Predictions of {', '.join(services)} from raw OHLCV bars (docs/inference.md)")

    def route(name: str | None) -> BarService:
        if name is None:
            if len(services) == 1:
                return next(iter(services.values()))
            raise RequestError(f"{len(services)} bundles are served; POST /predict/NAME with NAME one of "
                               f"{', '.join(services)}", 404)
        if name not in services:
            raise RequestError(f"no bundle named {name!r} is served; POST /predict/NAME with NAME one of "
                               f"{', '.join(services)}", 404)
        return services[name]

    def answer(service: BarService, body: Any) -> dict[str, Any]:
        bars = [bar.model_dump() for bar in body.bars]
        return {"model": service.bundle.model_name, "predictions": service.predict(bars)}

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        reason = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        more = f" ({len(errors) - 1} more)" if len(errors) > 1 else ""
        return JSONResponse(status_code=422, content={"error": f"{reason}{more}"})

    @app.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": str(exc)})

    @app.get("/health")
    def health() -> dict[str, Any]:
        if len(services) == 1:
            return next(iter(services.values())).health()
        return {"status": "ok", "bundles": {name: service.health() for name, service in services.items()}}

    @app.post("/predict")
    def predict(body: PredictRequest) -> dict[str, Any]:  # plain defs: FastAPI runs them in its thread pool
        return answer(route(None), body)

    @app.post("/predict/{name}")
    def predict_named(name: str, body: PredictRequest) -> dict[str, Any]:
        return answer(route(name), body)

    return app


def _version() -> str:
    from mlfactory.version import __version__

    return __version__

