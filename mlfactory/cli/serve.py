"""``mlfactory serve --bundle B``: predictions from raw bars over HTTP (FastAPI on uvicorn; docs/inference.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLE = """\
example:
  mlfactory serve --bundle lightning_logs/xgboost/<run_id>/bundle --port 8000
  curl -s localhost:8000/health
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"bars": [{"datetime": "2024-01-03T10:00:00Z",
       "symbol": "SYNA", "open": 100.1, "high": 100.4, "low": 99.9, "close": 100.2, "volume": 1200}]}'

Each symbol's last bars are kept (as many as the bundle's measured warm-up needs), so bars may come one
at a time. Needs the serve extra: pip install 'mlfactory[serve]'. See docs/inference.md, "Serving".
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlfactory serve",
        description="Serve a run's inference bundle over HTTP: GET /health, POST /predict with raw OHLCV bars.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, action="append", metavar="[NAME=]DIR",
                        help="a run's bundle/ directory (or the run directory); repeat it to serve several, each at "
                        "POST /predict/NAME (NAME defaults to the model's registry name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    parser.add_argument("--device", default="cpu", help="torch device for neural models (default: cpu)")
    parser.add_argument("--max-symbols", "--max_symbols", dest="max_symbols", type=int, default=1000, metavar="N",
                        help="most symbols whose history is kept (default: 1000)")
    parser.add_argument("--require-signature", "--require_signature", dest="require_signature", action="store_true",
                        help="refuse to start on a bundle not signed with the key in MLFACTORY_BUNDLE_KEY or the file "
                        "MLFACTORY_BUNDLE_KEY_FILE names")
    return parser


def serve_command(argv: list[str]) -> int:
    """Run ``mlfactory serve`` with ``argv``; returns the exit code when the server stops."""
    args = _parser().parse_args(argv)
    from mlfactory.errors import ConfigError
    from mlfactory.inference.service import require_server_stack

    require_server_stack()  # the install hint before any bundle is read
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0 to 65535, got {args.port}")
    if args.max_symbols < 1:
        raise ConfigError(f"--max-symbols must be at least 1, got {args.max_symbols}")
    import uvicorn

    from mlfactory.inference.bundle import ModelBundle
    from mlfactory.inference.service import BarService, create_app

    services: dict[str, BarService] = {}
    for given in args.bundle:
        # NAME=DIR, or a plain DIR (which may hold '=' itself: runs/lr=0.01/bundle)
        name, _, path = ("", "", given) if "=" not in given or Path(given).exists() else given.partition("=")
        bundle = ModelBundle.load(path, device=args.device, require_signature=args.require_signature)
        name = name or bundle.model_name
        if name in services:
            raise ConfigError(f"two bundles are named {name!r}; name them apart: --bundle NAME=DIR")
        services[name] = BarService(bundle, max_symbols=args.max_symbols)
        print(f"mlfactory serve: {name} ({bundle.model_name} from {bundle.path}, {services[name].keep} bars kept per "
              "symbol)", file=sys.stderr)
    routes = "POST /predict" if len(services) == 1 else "POST /predict/NAME"
    print(f"mlfactory serve: http://{args.host}:{args.port} (GET /health, {routes})", file=sys.stderr)
    uvicorn.run(create_app(services), host=args.host, port=args.port, log_level="warning")
    return 0
