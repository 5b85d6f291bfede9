"""Command line: read images without Django or a database.

    python -m workers.pipeline IMAGE [IMAGE...] [--product-type NAME] [--schema FILE.json]

Prints one JSON object per image on its own line: the ``ReadResult.to_dict()`` plus ``"path"``,
or ``{"path": ..., "error": {"code", "message"}}`` for an image that could not be read.
Exit status: 0 all read, 1 some image failed, 2 usage error (unknown product type, bad schema).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workers.fieldspec.catalogue import BUILTIN_SCHEMAS, builtin_schema, resolve_schema

from .errors import ConfigError, PipelineError, TerminalError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workers.pipeline", description=__doc__.split("\n")[0]
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--product-type",
        metavar="NAME",
        help=f"built-in schema: {', '.join(sorted(BUILTIN_SCHEMAS))} (default: default)",
    )
    g.add_argument("--schema", metavar="FILE.json", help="field schema JSON file")
    p.add_argument("--indent", type=int, default=None, help="pretty-print JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    schema: dict[str, Any] | None
    if args.schema:
        try:
            schema = json.loads(Path(args.schema).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"error: cannot read schema {args.schema}: {exc}", file=sys.stderr)
            return 2
    else:
        name = args.product_type or "default"
        try:
            schema = builtin_schema(name)
        except KeyError:
            print(
                f"error: unknown product type {name!r}; choose one of {', '.join(sorted(BUILTIN_SCHEMAS))}",
                file=sys.stderr,
            )
            return 2
    try:
        resolve_schema(schema)
    except ValueError as exc:
        print(f"error: invalid schema: {exc}", file=sys.stderr)
        return 2

    from .loader import get_pipeline

    try:
        pipe = get_pipeline()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    failed = 0
    for path in args.images:
        out: dict[str, Any]
        try:
            data = Path(path).read_bytes()
            out = {"path": path, **pipe.run(data, schema=schema).to_dict()}
        except OSError as exc:
            failed += 1
            out = {"path": path, "error": {"code": "unreadable_file", "message": str(exc)}}
        except TerminalError as exc:
            failed += 1
            out = {"path": path, "error": exc.to_dict()}
        except PipelineError as exc:
            failed += 1
            out = {"path": path, "error": {"code": "pipeline_error", "message": str(exc)}}
        print(json.dumps(out, ensure_ascii=False, indent=args.indent), flush=True)
    return 1 if failed else 0
