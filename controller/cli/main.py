"""`canaryctl`: see, and steer, canary releases (also installed as `kubectl canary`).

Exit codes: 0 done, 1 refused or failed (the message says why), 2 bad usage.
Global options may come before or after the command, because kubectl passes
a plugin everything after `kubectl canary`, e.g. `kubectl canary -n shop list`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import urllib3
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from controller.adapters.kubernetes import api_message
from controller.adapters.releases import ReleaseChanged, ReleaseClient
from controller.cli import acting, rendering, views
from controller.cli.linting import Problem, lint_file

Handler = Callable[[argparse.Namespace, TextIO], int]
ACT_VERBS = {
    "promote": "finish the current step now (--full: promote now, skipping steps and analysis)",
    "abort": "roll the canary back now",
    "pause": "hold the current step; its clock stops",
    "resume": "continue a paused release",
    "retry": "run a rolled-back tag again",
}
# Subcommands that belong to other parts of the project, imported only when used.
DELEGATES = {
    "replay": ("controller.replay.cli", "replay a release's analysis against recorded metrics"),
    "lint-migrations": ("controller.cli.lint_migrations", "check SQL migrations for safety"),
}
# The global options a delegate takes too, when given before its name (neither
# talks to a cluster, so --kubeconfig and --context mean nothing to them).
_PASSED_ON = {
    "replay": {"-n", "--namespace", "-o", "--output"},
    "lint-migrations": {"-o", "--output"},
}


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The kubectl-style options, accepted on the main parser and on every subcommand."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--kubeconfig", default=default, help="path to the kubeconfig file")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument("-n", "--namespace", default=default, help="the namespace of the release")
    parser.add_argument(
        "-o",
        "--output",
        choices=("json", "yaml"),
        default=argparse.SUPPRESS if suppress else None,
        help="machine-readable output instead of tables",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canaryctl", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _global_options(p, suppress=True)
        p.set_defaults(handler=handler)
        return p

    p = command("list", "releases in the namespace, or in all of them with -A", _list)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p = command("status", "phase, step, time left, metrics, gates and rollback reason", _status)
    p.add_argument("name")
    p = command("history", "the last releases of NAME and how they ended", _history)
    p.add_argument("name")
    p.add_argument("--events", action="store_true", help="also the controller's Events")
    p = command("start", "start a canary of TAG (sets spec.release.tag)", _start)
    p.add_argument("name")
    p.add_argument("--tag", required=True)
    _wait_options(p)
    for verb, help_ in ACT_VERBS.items():
        p = command(verb, help_, _act)
        p.add_argument("name")
        if verb == "promote":
            p.add_argument("--full", action="store_true", help="promote now, skip the rest")
        _wait_options(p)
    p = command(
        "rollback",
        "back to the previous stable tag on every replica at once, without a canary\n"
        "(during a canary: roll the canary back)",
        _rollback,
    )
    p.add_argument("name")
    _wait_options(p)
    p = command("lint", "validate CanaryRelease YAML files offline", _lint)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    for name, (_, help_) in DELEGATES.items():
        command(name, help_ + f" (see canaryctl {name} --help)", _delegate_without_arguments)
    return parser


def _wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the controller has handled it, and show the outcome",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for --wait (default 60)")


def _connect(args: argparse.Namespace) -> tuple[ReleaseClient, str]:
    from controller.cli.connecting import connect

    conn = connect(args.kubeconfig, args.context, args.namespace)
    return ReleaseClient(conn.api), conn.namespace


def _emit(out: TextIO, args: argparse.Namespace, data: Any, human: Callable[[], Any]) -> None:
    if args.output == "json":
        out.write(json.dumps(data, indent=2, default=str) + "\n")
    elif args.output == "yaml":
        out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        rendering.print_to(out, human())


def _now() -> datetime:
    return datetime.now(UTC)


def _list(args: argparse.Namespace, out: TextIO) -> int:
    client, namespace = _connect(args)
    releases = client.list_releases(None if args.all_namespaces else namespace)
    rows = [views.list_row(r, _now()) for r in releases]
    if not rows and args.output is None:
        where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        out.write(f"no CanaryReleases in {where}\n")
        return 0
    _emit(out, args, rows, lambda: rendering.list_table(rows, all_namespaces=args.all_namespaces))
    return 0


def _status(args: argparse.Namespace, out: TextIO) -> int:
    client, namespace = _connect(args)
    view = views.status_view(client.get(namespace, args.name), _now())
    _emit(out, args, view, lambda: rendering.status_panel(view))
    return 0


def _history(args: argparse.Namespace, out: TextIO) -> int:
    client, namespace = _connect(args)
    rows = views.history_rows(client.get(namespace, args.name))
    events = []
    if args.events:
        for e in client.events(namespace, args.name):
            when = e.last_timestamp or e.event_time
            events.append(
                {
                    "time": when.isoformat() if when else None,
                    "type": e.type,
                    "reason": e.reason,
                    "message": e.message,
                }
            )
    data: Any = {"history": rows, "events": events} if args.events else rows

    def human() -> Any:
        if not args.events:
            return rendering.history_table(rows)
        from rich.console import Group

        return Group(rendering.history_table(rows), rendering.events_table(events))

    _emit(out, args, data, human)
    return 0


def _report(args: argparse.Namespace, out: TextIO, client: ReleaseClient, sent: acting.Sent) -> int:
    result: dict[str, Any] = {
        "namespace": sent.namespace,
        "name": sent.name,
        "command": sent.command,
        "tag": sent.tag,
        "summary": sent.summary,
    }
    code = 0
    if args.wait:
        release, refusal = acting.wait_for_acknowledgement(
            client, sent, args.timeout, warn=lambda text: sys.stderr.write(text + "\n")
        )
        view = views.status_view(release, _now())
        result.update(phase=view["phase"], message=view["message"], refused=refusal)
        if refusal:
            code = 1
    if args.output is not None:
        _emit(out, args, result, lambda: None)
        return code
    out.write(sent.summary + "\n")
    if args.wait:
        if result["refused"]:
            out.write(f"the controller ignored it: {result['refused']}\n")
        else:
            out.write(f"now {result['phase']}: {result['message'] or ''}\n")
    return code


def _act(args: argparse.Namespace, out: TextIO) -> int:
    client, namespace = _connect(args)
    verb = "promote-full" if getattr(args, "full", False) else args.command
    return _report(args, out, client, acting.send(client, namespace, args.name, verb))


def _start(args: argparse.Namespace, out: TextIO) -> int:
    client, namespace = _connect(args)
    return _report(args, out, client, acting.start(client, namespace, args.name, args.tag))


def _rollback(args: argparse.Namespace, out: TextIO) -> int:
    client, namespace = _connect(args)
    return _report(args, out, client, acting.rollback(client, namespace, args.name))


def _lint(args: argparse.Namespace, out: TextIO) -> int:
    problems: list[Problem] = []
    for file in args.files:
        problems += lint_file(Path(file))
    errors = [p for p in problems if p.severity == "error"]
    failed = bool(errors) or (args.strict and bool(problems))
    if args.output is not None:
        data = {"valid": not failed, "problems": [p.as_dict() for p in problems]}
        _emit(out, args, data, lambda: None)
        return 1 if failed else 0
    for problem in problems:
        out.write(problem.text() + "\n")
    if not failed:
        names = ", ".join(args.files)
        out.write(f"ok: {names}" + (f" ({len(problems)} warnings)" if problems else "") + "\n")
    return 1 if failed else 0


_VALUE_OPTIONS = {"--kubeconfig", "--context", "-n", "--namespace", "-o", "--output"}


def _delegated(argv: list[str]) -> tuple[str, list[str]] | None:
    """The delegated subcommand and its own arguments, when argv names one.

    Delegates parse their own options (and answer their own --help), so they
    get everything after their name untouched, after the global options before
    it that they take (`canaryctl -n shop replay` fills replay's {{namespace}}).
    """
    for i, token in enumerate(argv):
        if token.startswith("-") or (i > 0 and argv[i - 1] in _VALUE_OPTIONS):
            continue  # an option, or an option's value (`-n replay` is a namespace)
        if token not in DELEGATES:
            return None
        taken, before = _PASSED_ON[token], []
        for j, option in enumerate(argv[:i]):
            name = option.split("=", 1)[0] if option.startswith("--") else option[:2]
            if name in taken:  # `--output=json`, `-o json` and `-ojson` alike
                before.append(option)
            elif j > 0 and argv[j - 1] in taken and argv[j - 1] in _VALUE_OPTIONS:
                before.append(option)  # its value
        return token, [*before, *argv[i + 1 :]]
    return None


def _delegate(name: str, argv: list[str]) -> int:
    module_name, _ = DELEGATES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            sys.stderr.write(f"canaryctl {name} is not available in this version\n")
            return 2
        raise
    result: int = module.main(argv)
    return result


def _delegate_without_arguments(args: argparse.Namespace, out: TextIO) -> int:
    return _delegate(args.command, [])


def _api_error(exc: ApiException) -> str:
    message = api_message(exc)
    hint = ""
    if exc.status == 403:  # name the right resource: Events are read by --events and --wait
        if 'resource "events"' in str(message):
            hint = " (RBAC: ask for list on events)"
        elif "canaryreleases" in str(message):
            hint = " (RBAC: ask for patch/get/list on canaryreleases.canary.dev)"
    return f"{exc.status} {exc.reason}: {message}{hint}"


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = sys.argv[1:] if argv is None else argv
    delegated = _delegated(argv)
    if delegated is not None:
        return _delegate(*delegated)
    args = build_parser().parse_args(argv)
    try:
        handler: Handler = args.handler
        return handler(args, out)
    except acting.Refused as exc:
        sys.stderr.write(f"refused: {exc}\n")
    except (ReleaseChanged, TimeoutError) as exc:
        sys.stderr.write(f"error: {exc}\n")
    except LookupError as exc:
        sys.stderr.write(f"error: {exc.args[0] if exc.args else exc}\n")
    except ApiException as exc:
        sys.stderr.write(f"error: {_api_error(exc)}\n")
    except ConfigException as exc:
        sys.stderr.write(f"error: no usable kubeconfig: {exc}\n")
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        sys.stderr.write(f"error: cannot reach the apiserver: {reason}\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
