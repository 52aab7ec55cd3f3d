"""Serving load: ``mlfactory serve`` on loopback with concurrent clients vs the same bundle in-process.

For an xgboost and an lstm bundle (fitted for a few batches on the synthetic sample, base timeframe
only: 30 features), each client streams its own symbol's bars one per request (``POST /predict`` with
one bar) for ``--seconds``; every client first sends the history the service keeps in one request.
The server is ``mlfactory serve`` in its own process (uvicorn, one worker); clients are threads with
a keep-alive ``http.client`` connection each. Reported per bundle: bars/s over all clients and the
p50/p99 latency of a bar (request sent to answer read).

In-process: the same bars, one at a time, through ``BarService.predict`` (the service's logic and
``ModelBundle.predict_bars``, no HTTP) in one thread; the ratio of the latencies is what HTTP, JSON
and the server add. Use ``nice -n 10``; the figures go into docs/inference.md.

    nice -n 10 .venv/bin/python benchmarks/bench_serve.py --seconds 10 --clients 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

SYMBOLS = ("SYNA", "SYNB", "SYNC", "SYND", "SYNE", "SYNF", "SYNG", "SYNH")


def fit_bundle(name: str, params: dict, data_dir: Path, root: Path) -> Path:
    """A small fitted run of ``name`` on ``data_dir``; its bundle's path."""
    import lightning as L
    import torch

    from mlfactory import FactoryDataModule, RunRecord, create_model

    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=1, logger=L.pytorch.loggers.TensorBoardLogger(str(root), name=name),
                        callbacks=[RunRecord(importance_samples=0)], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_train_batches=20)
    datamodule = FactoryDataModule(data_dir=str(data_dir), horizon=5, seq_len=16, batch_size=256)
    trainer.fit(create_model(name, **params), datamodule=datamodule)
    return Path(trainer.log_dir) / "bundle"


def bar_records(frame: pd.DataFrame) -> list[dict]:
    stamps = pd.to_datetime(frame["datetime"], utc=True).map(lambda t: t.isoformat())
    out = frame.assign(datetime=stamps)[["datetime", "symbol", "open", "high", "low", "close", "volume"]]
    return out.to_dict("records")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(bundle: Path, port: int) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "mlfactory"
    server = subprocess.Popen([str(exe), "serve", "--bundle", str(bundle), "--port", str(port)],
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"mlfactory serve exited: {server.stderr.read()}") from None
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("mlfactory serve did not answer /health within 120 s")


def post(connection: http.client.HTTPConnection, bars: list[dict]) -> dict:
    # bytes, not str: http.client then sends headers and body in one segment (a str body goes out in a second
    # send, which Nagle's algorithm holds until the server's delayed ACK: 40 ms per request on Linux loopback)
    connection.request("POST", "/predict", body=json.dumps({"bars": bars}).encode(),
                       headers={"content-type": "application/json"})
    response = connection.getresponse()
    body = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {body}")
    return body


def http_load(port: int, streams: dict[str, list[dict]], warm: int, seconds: float) -> tuple[list[float], float]:
    """Latencies (s) of every streamed bar over all clients, and the wall time of the streaming phase."""
    latencies: list[list[float]] = [[] for _ in streams]
    barrier = threading.Barrier(len(streams) + 1)
    stop = threading.Event()

    def client(i: int, bars: list[dict]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        post(connection, bars[:warm])  # the history the service keeps, in one request
        barrier.wait()
        for bar in bars[warm:]:
            if stop.is_set():
                break
            start = time.perf_counter()
            post(connection, [bar])
            latencies[i].append(time.perf_counter() - start)
        connection.close()

    threads = [threading.Thread(target=client, args=(i, bars)) for i, bars in enumerate(streams.values())]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return [x for part in latencies for x in part], time.perf_counter() - began


def in_process(bundle_path: Path, bars: list[dict], warm: int, seconds: float) -> list[float]:
    from mlfactory.inference import ModelBundle
    from mlfactory.inference.service import BarService

    service = BarService(ModelBundle.load(bundle_path))
    service.predict(bars[:warm])
    latencies = []
    deadline = time.perf_counter() + seconds
    for bar in bars[warm:]:
        if time.perf_counter() > deadline:
            break
        start = time.perf_counter()
        service.predict([bar])
        latencies.append(time.perf_counter() - start)
    return latencies


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    values = np.asarray(latencies) * 1000
    return {"bars": len(values), "bars_per_s": len(values) / wall, "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="streaming time per measurement (default 10)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients, one symbol each (default 4)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mlfactory.data.synthetic import generate_bars, make_sample_splits
    from mlfactory.inference import ModelBundle

    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        root = Path(tmp)
        data = make_sample_splits(root / "data", n_bars=4000, timeframes=("1min",))
        bundles = {
            "xgboost": fit_bundle("xgboost", {"n_estimators": 50, "max_depth": 4, "n_jobs": 1}, data, root),
            "lstm": fit_bundle("lstm", {"hidden_size": 32, "num_layers": 1}, data, root),
        }
        bars = generate_bars(n_bars=6000, symbols=SYMBOLS[: args.clients], seed=7)
        streams = {s: bar_records(bars[bars["symbol"] == s]) for s in SYMBOLS[: args.clients]}
        print(f"{args.clients} clients, {args.seconds:g} s each, one bar per request; "
              f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
        for name, path in bundles.items():
            bundle = ModelBundle.load(path)
            warm = bundle.required_history + bundle.seq_len + 5
            local = summary(*(lambda lat: (lat, sum(lat)))(in_process(path, streams[SYMBOLS[0]], warm, args.seconds)))
            port = free_port()
            server = start_server(path, port)
            try:
                latencies, wall = http_load(port, streams, warm, args.seconds)
            finally:
                server.terminate()
                server.wait(timeout=30)
            remote = summary(latencies, wall)
            print(f"{name:8s} history kept {warm - 5} bars | in-process: {local['bars_per_s']:7.1f} bars/s, p50 "
                  f"{local['p50_ms']:6.2f} ms, p99 {local['p99_ms']:6.2f} ms | HTTP: {remote['bars_per_s']:7.1f} bars/s, "
                  f"p50 {remote['p50_ms']:6.2f} ms, p99 {remote['p99_ms']:6.2f} ms | p50 ratio "
                  f"{remote['p50_ms'] / local['p50_ms']:.2f} x")


if __name__ == "__main__":
    main()
