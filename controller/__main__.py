"""`python -m controller run`: start the controller (also the `canary-controller` command)."""

from __future__ import annotations

import argparse
import os
import sys

from controller.replay.cli import add_parser as add_replay_parser
from controller.runtime.logs import configure_logging
from controller.runtime.webhook import add_webhook_flags


def _run(args: argparse.Namespace) -> int:
    from controller.runtime.leader import LeaseTiming
    from controller.runtime.running import LeaderElection, RunOptions, default_lease_namespace, run
    from controller.runtime.webhook import webhook_settings

    election = None
    if args.leader_elect:
        election = LeaderElection(
            namespace=args.leader_election_namespace or default_lease_namespace(),
            lease_name=args.leader_election_id,
            identity=args.leader_election_identity,
            timing=LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period),
        )
    options = RunOptions(
        namespaces=args.namespace or (),
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        leader_election=election,
        liveness=args.liveness,
        webhook=webhook_settings(args),
    )
    return run(options)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _add_run_flags(run: argparse.ArgumentParser) -> None:
    """Every flag also reads an environment variable, so the chart and tests can set either."""
    run.add_argument(
        "--metrics-address",
        default=_env("CANARY_METRICS_ADDRESS", "0.0.0.0"),
        help="address for /metrics, /healthz and /readyz (env CANARY_METRICS_ADDRESS)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("CANARY_METRICS_PORT", "8080")),
        help="port for /metrics, /healthz and /readyz (env CANARY_METRICS_PORT; default 8080)",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env("CANARY_LEADER_ELECT", "false").lower() in ("1", "true", "yes"),
        help="reconcile only while holding a coordination.k8s.io Lease (env CANARY_LEADER_ELECT)",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("CANARY_LEADER_ELECTION_NAMESPACE"),
        help="namespace of the Lease (default: the controller's own namespace)",
    )
    run.add_argument(
        "--leader-election-id",
        default=_env("CANARY_LEADER_ELECTION_ID", "canary-controller"),
        help="name of the Lease",
    )
    run.add_argument(
        "--leader-election-identity",
        default=os.environ.get("CANARY_LEADER_ELECTION_IDENTITY", ""),
        help="this replica's name in the Lease (default: $POD_NAME, else host, pid and a nonce)",
    )
    for flag, env, default, what in (
        ("--lease-duration", "CANARY_LEASE_DURATION", "15", "how long a Lease is valid unrenewed"),
        ("--renew-deadline", "CANARY_RENEW_DEADLINE", "10", "the leader exits if not renewed by"),
        ("--retry-period", "CANARY_RETRY_PERIOD", "2", "between lease attempts"),
    ):
        run.add_argument(
            flag, type=float, default=float(_env(env, default)), help=f"seconds {what} (env {env})"
        )


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
        help="also serve kopf's own health probe, e.g. http://127.0.0.1:8081/healthz",
    )
    _add_run_flags(run)
    add_webhook_flags(run)
    run.set_defaults(func=_run)
    crd = sub.add_parser("crd", help="print the CustomResourceDefinition")
    crd.set_defaults(func=_crd)
    add_replay_parser(sub)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
