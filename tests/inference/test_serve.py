"""``mlfactory serve``: real HTTP on loopback (uvicorn in a thread, urllib as the client; no test client)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.data.synthetic import generate_bars
from mlfactory.inference import ModelBundle

PROBS = ["p_down", "p_neutral", "p_up"]
STREAMED = 40  # bars sent one request each


class Server:
    """A uvicorn server of a bundle on a free loopback port, in a thread."""

    def __init__(self, bundle: "ModelBundle | dict") -> None:
        import uvicorn

        from mlfactory.inference.service import BarService, create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(bundle if isinstance(bundle, dict) else BarService(bundle)), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def request(self, path: str, payload: object | None = None, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return generate_bars(n_bars=2500)


@pytest.fixture(scope="module")
def served(fitted_run) -> Iterator[tuple[Server, ModelBundle]]:
    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    server = Server(bundle)
    yield server, bundle
    server.stop()


def payload(frame: pd.DataFrame) -> dict:
    rows = frame.assign(datetime=pd.to_datetime(frame["datetime"], utc=True).map(lambda t: t.isoformat()))
    return {"bars": rows[["datetime", "symbol", "open", "high", "low", "close", "volume"]].to_dict("records")}


def test_streaming_bar_by_bar_equals_batch_predict(served, bars):
    server, bundle = served
    status, health = server.request("/health")
    assert status == 200 and health["model"] == "lstm" and health["required_history"] == bundle.required_history
    assert len(health["bundle_sha256"]) == 64 and health["versions"]["libraries"]["torch"]

    one = bars[bars["symbol"] == "SYNA"].reset_index(drop=True)
    start = len(one) - STREAMED
    batch = bundle.predict_bars(one)  # every bar, all history
    # the first bars in one request (fewer than the history the service keeps, then more), the rest one at a time
    status, first = server.request("/predict", payload(one.iloc[:start]))
    assert status == 200 and len(first["predictions"]) == start
    streamed = list(first["predictions"])
    for i in range(start, len(one)):
        status, body = server.request("/predict", payload(one.iloc[i : i + 1]))
        assert status == 200, body
        streamed += body["predictions"]
    got = pd.DataFrame(streamed)
    np.testing.assert_array_equal(got["has_history"].to_numpy(), batch["has_history"].to_numpy())
    ok = batch["has_history"].to_numpy()
    assert ok[start:].all()
    probs = np.array([[p[n] for n in ("down", "neutral", "up")] for p in got["probabilities"][ok]])
    np.testing.assert_allclose(probs, batch.loc[ok, PROBS].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["class"][ok].to_numpy(dtype=int), batch["predicted_class"][ok].to_numpy(dtype=int))
    assert got["probabilities"][~ok].isna().all() and got["class"][~ok].isna().all()


def test_bad_requests_get_a_one_line_4xx_and_leave_the_state_unharmed(served, bars):
    server, bundle = served
    one = bars[bars["symbol"] == "SYNB"].reset_index(drop=True)
    history = len(one) - 3
    assert server.request("/predict", payload(one.iloc[:history]))[0] == 200
    good = payload(one.iloc[history : history + 1])
    bar = good["bars"][0]
    earlier = payload(one.iloc[history - 5 : history - 4])
    cases = {
        "out of order": payload(one.iloc[[history + 1, history]]),
        "duplicate in the request": payload(one.iloc[[history, history]]),
        "duplicate of a bar received": payload(one.iloc[history - 1 : history]),
        "earlier than received": earlier,
        "unknown field": {"bars": [{**bar, "vwap": 1.0}]},
        "unknown top-level field": {**good, "extra": 1},
        "missing field": {"bars": [{k: v for k, v in bar.items() if k != "close"}]},
        "high below low": {"bars": [{**bar, "high": bar["low"] / 2}]},
        "off the grid": {"bars": [{**bar, "datetime": bar["datetime"].replace(":00+", ":30+")}]},
        "no bars": {"bars": []},
        # a new symbol: nothing to be "earlier than"; such times once wrapped around to another century
        "far-future time": {"bars": [{**bar, "symbol": "NEWSYM", "datetime": "9999-01-01T00:00:00+00:00"}]},
        "ancient time": {"bars": [{**bar, "symbol": "NEWSYM", "datetime": "1200-01-01T00:00:00+00:00"}]},
        "overlong symbol": {"bars": [{**bar, "symbol": "S" * 65}]},
        "too many bars": {"bars": [bar] * 10_001},
    }
    for case, body in cases.items():
        status, answer = server.request("/predict", body)
        assert 400 <= status < 500, (case, status, answer)
        assert set(answer) == {"error"} and "\n" not in answer["error"] and answer["error"], case
    for literal in ("NaN", "Infinity"):  # JSON extensions that Python's json writes; refused as values
        raw = json.dumps(good).replace(json.dumps(bar["close"]), literal, 1).encode()
        status, answer = server.request("/predict", raw=raw)
        assert status == 422 and "finite" in answer["error"], answer

    # the state is as before: the next bars predict exactly as a batch of every bar does
    status, body = server.request("/predict", payload(one.iloc[history:]))
    assert status == 200
    batch = bundle.predict_bars(one).iloc[history:]
    probs = np.array([[p[n] for n in ("down", "neutral", "up")] for p in (r["probabilities"] for r in body["predictions"])])
    np.testing.assert_allclose(probs, batch[PROBS].to_numpy(), rtol=0, atol=1e-6)


def test_serve_refuses_an_unsigned_bundle_when_signatures_are_required(fitted_run, monkeypatch, capsys, tmp_path):
    bundle = Path(shutil.copytree(fitted_run("xgboost") / "bundle", tmp_path / "bundle"))
    (bundle / "signature.json").unlink(missing_ok=True)  # signed when the run was fitted with a key set
    monkeypatch.setenv("MLFACTORY_BUNDLE_KEY", "k" * 32)
    assert main(["serve", "--bundle", str(bundle), "--require-signature"]) == 1
    err = capsys.readouterr().err.strip()
    assert "is not signed, and a signature is required" in err and len(err.splitlines()) == 1


def test_serve_refuses_an_old_bundle_without_a_recipe_in_one_line(capsys):
    golden = Path(__file__).parents[1] / "golden" / "v1" / "xgboost"
    assert main(["serve", "--bundle", str(golden), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "holds no recipe of prepare" in err and len(err.splitlines()) == 1


def test_without_the_server_stack_serve_says_what_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed: importing it raises ImportError
    assert main(["serve", "--bundle", "anything"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "mlfactory: error: mlfactory serve needs FastAPI and uvicorn: pip install 'mlfactory[serve]'"


def test_the_state_is_bounded_in_bars_and_symbols(fitted_run, bars):
    from mlfactory.inference.service import BarService, RequestError

    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    service = BarService(bundle, max_symbols=1)
    service.predict(payload(bars[bars["symbol"] == "SYNA"].head(900))["bars"])
    assert len(service.history["SYNA"].times) == service.keep == bundle.required_history + 1
    with pytest.raises(RequestError, match="at most 1 are served") as refused:
        service.predict(payload(bars[bars["symbol"] == "SYNB"].head(2))["bars"])
    assert refused.value.status == 409 and list(service.history) == ["SYNA"]


def test_several_bundles_are_served_by_name(fitted_run, served, bars):
    from mlfactory.inference.service import BarService

    lstm = served[1]
    xgboost = ModelBundle.load(fitted_run("xgboost") / "bundle")
    server = Server({"fast": BarService(xgboost), "deep": BarService(lstm)})
    try:
        one = bars[bars["symbol"] == "SYNC"].reset_index(drop=True).tail(600)
        status, health = server.request("/health")
        assert status == 200 and set(health["bundles"]) == {"fast", "deep"}
        for name, bundle in (("fast", xgboost), ("deep", lstm)):
            status, body = server.request(f"/predict/{name}", payload(one))
            assert status == 200 and body["model"] == bundle.model_name
            expected = bundle.predict_bars(one)
            got = pd.DataFrame(body["predictions"])
            np.testing.assert_array_equal(got["has_history"].to_numpy(), expected["has_history"].to_numpy())
        for path in ("/predict", "/predict/other"):
            status, answer = server.request(path, payload(one.tail(1)))
            assert status == 404 and "POST /predict/NAME with NAME one of fast, deep" in answer["error"]
    finally:
        server.stop()
