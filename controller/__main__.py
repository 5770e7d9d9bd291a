"""`python -m controller run`: start the controller (also the `canary-controller` command)."""

from __future__ import annotations

import argparse
import sys

from controller.runtime.logs import configure_logging


def _run(args: argparse.Namespace) -> int:
    import kopf

    import controller.runtime.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON)
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def _crd(_: argparse.Namespace) -> int:
    from controller.api.crd import render_crd

    sys.stdout.write(render_crd())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="canary-controller", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the controller against KUBECONFIG or in-cluster config")
    run.add_argument("--namespace", action="append", help="watch only this namespace (repeatable)")
    run.add_argument(
        "--liveness",
        default=None,
        help="serve kopf's health probe, e.g. http://0.0.0.0:8080/healthz",
    )
    run.set_defaults(func=_run)
    crd = sub.add_parser("crd", help="print the CustomResourceDefinition")
    crd.set_defaults(func=_crd)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
