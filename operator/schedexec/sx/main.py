"""`kubectl-sx`: the command line (argparse) and what each command does.

kubectl runs any `kubectl-NAME` on PATH as `kubectl NAME`, passing the rest of the command line as it is:
so the common flags (-n, --context, --kubeconfig) are accepted before and after the command, as kubectl
accepts them. Each command is a few lines wiring the pure modules to `cluster`; every error is one line on
stderr and an exit code from `verdicts.Exit`, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from schedexec.sx import cluster as kube
from schedexec.sx import describe as describing
from schedexec.sx import output, results, runlogs, specs, waiting
from schedexec.sx.progress import Console
from schedexec.sx.timing import parse_duration
from schedexec.sx.verdicts import RESOURCE, Exit, verdict

PROG = "kubectl sx"

EXAMPLES = {
    "run": """examples:
  # run selectModel in the shop image, wait, and print the result (exit code: see `kubectl sx wait --help`)
  kubectl sx run --image ghcr.io/schedexec/example-shop:0.1.0 --method selectModel --function getCategories \\
      --args '{"shopUrl": "http://shop:8080"}' --credentials shop-credentials --wait
  # from a manifest, streaming each run's log while it waits
  kubectl sx run -f examples/sandbox/detonate.yaml --wait --logs
  # args from a file; print only the generated name
  kubectl sx run --image my/component:1 --method fetch --args @args.json -o name""",
    "wait": """examples:
  kubectl sx wait shop-categories --timeout 5m && echo succeeded
exit codes:
  0 Succeeded, 3 Failed, 4 TimedOut, 5 Cancelled (reason on stderr),
  6 the wait's own --timeout passed first, 1 an error (not found, forbidden, no cluster), 2 a usage error""",
    "result": """examples:
  kubectl sx result shop-categories               # indented JSON
  kubectl sx result shop-categories -o raw > out  # a string as it is, anything else compact JSON
  kubectl sx result shop-categories -o yaml""",
    "logs": """examples:
  kubectl sx logs detonate             # the current (or last) run's log
  kubectl sx logs detonate --run 2 -f  # follow run 2 while it runs""",
    "describe": """examples:
  kubectl sx describe detonate""",
    "cancel": """examples:
  kubectl sx cancel detonate && kubectl sx wait detonate   # exits 5 once it is Cancelled""",
    "resubmit": """examples:
  kubectl sx resubmit shop-categories                        # same spec, new generated name
  kubectl sx resubmit shop-categories --args @new-args.json --wait""",
}


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-n/--context/--kubeconfig; on the subcommands without defaults, so they don't undo the top-level ones."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("-n", "--namespace", default=default, help="the namespace (default: the context's)")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument(
        "--kubeconfig", default=default, help="path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seconds(text: str) -> int:
    return max(int(_duration(text)), 1)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Run and follow schedexec ScheduledExecutions: run a method and wait, read the result, "
        "follow the logs, see the history, cancel, resubmit.",
        epilog="""examples:
  kubectl sx run -f examples/shop/select-model.yaml --wait   # create, wait, print the result; exit code per outcome
  kubectl sx wait detonate --timeout 10m                      # 0 Succeeded, 3 Failed, 4 TimedOut, 5 Cancelled
  kubectl sx logs detonate --run 2 -f
  kubectl sx describe detonate
`kubectl sx COMMAND --help` has more; docs/cli.md has it all.""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(top, top=True)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(sub, top=False)
        return sub

    run = command("run", "create an execution from flags or a manifest (-f), optionally wait for it")
    run.add_argument("name", nargs="?", help="its name (default: generated from the method)")
    run.add_argument("-f", "--filename", help="a manifest with one ScheduledExecution ('-': stdin)")
    run.add_argument("--image", help="the component's image")
    run.add_argument("--method", help="selectModel, getMetaModel, verifyCredentials or a command")
    run.add_argument("--module", help="the action or trigger (getMetaModel)")
    run.add_argument("--function", help="the select-model function (selectModel)")
    run.add_argument("--args", dest="run_args", help="the first run's args: a JSON object, or @FILE (@-: stdin)")
    run.add_argument("--credentials", metavar="SECRET", help="a Secret mounted read-only into each run")
    run.add_argument("--timeout", type=_seconds, help="the whole sequence's deadline (spec.timeoutSeconds; 90s, 10m)")
    run.add_argument("--run-timeout", type=_seconds, help="one run's deadline (spec.runTimeoutSeconds)")
    _waiting(run)
    run.add_argument("-o", "--output", choices=output.FORMATS, help="how to print the created execution")

    wait = command("wait", "wait until an execution finishes; the exit code says how it ended")
    wait.add_argument("name")
    wait.add_argument("--timeout", type=_duration, help="give up after this long (90s, 5m; default: no limit)")
    wait.add_argument("--logs", action="store_true", help="stream each run's log while waiting")

    result = command("result", "print a succeeded execution's result (checked against its size and sha256)")
    result.add_argument("name")
    result.add_argument("-o", "--output", choices=results.FORMATS, default="json", help="json (default), yaml, raw")

    logs = command("logs", "print a run's log (the current run by default)")
    logs.add_argument("name")
    logs.add_argument("--run", type=int, help="the run's index, from 1 (default: the current or last run)")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the log while the run runs")

    describe = command("describe", "show an execution: spec, phase, conditions, run history, next run, Events")
    describe.add_argument("name")

    cancel = command("cancel", "cancel an execution (spec.cancel=true): its run is stopped, it ends Cancelled")
    cancel.add_argument("name")
    cancel.add_argument("-o", "--output", choices=output.FORMATS, help="how to print the cancelled execution")

    resubmit = command("resubmit", "create a new execution with an old one's spec (specs are immutable)")
    resubmit.add_argument("name")
    resubmit.add_argument("--args", dest="run_args", help="new args for the first run: JSON or @FILE")
    _waiting(resubmit)
    resubmit.add_argument("-o", "--output", choices=output.FORMATS, help="how to print the created execution")
    return top


def _waiting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="wait until it finishes and print its result")
    parser.add_argument("--logs", action="store_true", help="with --wait: stream each run's log while waiting")
    parser.add_argument("--wait-timeout", type=_duration, help="with --wait: give up waiting after this long")


class Failure(Exception):
    """A command that cannot do what was asked: one line for stderr, and the exit code."""

    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.code = code


def _read(path: str) -> str:
    """A manifest's or @FILE's text ('-': stdin); OSError when it cannot be read, SpecError when not UTF-8."""
    if path == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        return sys.stdin.read() if stdin is None else specs.decoded(stdin.read(), "stdin")
    return specs.decoded(Path(path).read_bytes(), path)


SPEC_FLAGS = ("image", "method", "module", "function", "credentials", "timeout", "run_timeout")
"""`run`'s flags that make a spec, which a manifest (-f) brings itself."""


def _new_execution(options: argparse.Namespace) -> dict[str, Any]:
    """The execution `run` creates."""
    args = None if options.run_args is None else specs.parse_args_value(options.run_args, _read)
    if options.filename:
        flags = [flag for flag in SPEC_FLAGS if getattr(options, flag)]
        if flags:
            flag = flags[0].replace("_", "-")
            raise Failure(f"error: -f and --{flag} cannot be combined (only --args overrides a manifest)", Exit.USAGE)
        try:
            body = specs.execution_from_manifest(_read(options.filename), options.filename)
        except OSError as exc:
            raise Failure(f"error: cannot read {options.filename}: {exc.strerror or exc}") from exc
        if options.name:
            body["metadata"].pop("generateName", None)
            body["metadata"]["name"] = options.name
        return body if args is None else specs.with_args(body, args)
    if not options.image or not options.method:
        raise Failure("error: run needs --image and --method, or -f MANIFEST", Exit.USAGE)
    return specs.execution_from_flags(
        image=options.image,
        method=options.method,
        args=args,
        module=options.module,
        function=options.function,
        credentials=options.credentials,
        timeout_seconds=options.timeout,
        run_timeout_seconds=options.run_timeout,
        name=options.name,
    )


class Commands:
    """The commands, on one cluster connection and two streams."""

    def __init__(self, cluster: kube.Cluster, out: TextIO, err: TextIO) -> None:
        self.cluster, self.out, self.err = cluster, out, err

    def _console(self) -> Console:
        return Console(self.out, self.err, live=self.err.isatty())

    def _created(self, body: dict[str, Any], options: argparse.Namespace) -> int:
        created = self.cluster.create(body)
        shown = output.render(created, options.output, waiting.now())
        # with --wait, stdout is for the result: the "created" line goes to stderr unless -o asked for it
        (self.out if options.output or not options.wait else self.err).write(shown)
        if not options.wait:
            return Exit.SUCCEEDED
        name = created["metadata"]["name"]
        return self._await(name, options.wait_timeout, options.logs, print_result=True, created=True)

    def _await(self, name: str, timeout: float | None, logs: bool, *, print_result: bool, created: bool = False) -> int:
        ended = waiting.wait(self.cluster, name, timeout, self._console(), logs=logs, seen=created)
        if ended.verdict is None:
            phase = (ended.execution.get("status") or {}).get("phase") or "Pending"
            raise Failure(f"error: timed out waiting for {RESOURCE}/{name} (still {phase})", Exit.WAIT_TIMEOUT)
        if ended.verdict.code != Exit.SUCCEEDED:
            raise Failure(f"error: {ended.verdict.message}", ended.verdict.code)
        if print_result:
            self.out.write(results.render(self._result(ended.execution), "json"))
        else:
            self.out.write(ended.verdict.message + "\n")
        return Exit.SUCCEEDED

    def _result(self, execution: dict[str, Any]) -> Any:
        try:
            uid = str((execution.get("metadata") or {}).get("uid") or "")
            return results.read_result(execution.get("status") or {}, self.cluster.config_map, uid)
        except results.ResultError as exc:
            raise Failure(f"error: {exc}") from exc

    def run(self, options: argparse.Namespace) -> int:
        return self._created(_new_execution(options), options)

    def resubmit(self, options: argparse.Namespace) -> int:
        args = None if options.run_args is None else specs.parse_args_value(options.run_args, _read)
        return self._created(specs.resubmission(self.cluster.get(options.name), args), options)

    def wait(self, options: argparse.Namespace) -> int:
        return self._await(options.name, options.timeout, options.logs, print_result=False)

    def result(self, options: argparse.Namespace) -> int:
        execution = self.cluster.get(options.name)
        ended = verdict(execution)
        if ended is None:
            phase = (execution.get("status") or {}).get("phase") or "Pending"
            raise Failure(f"error: {RESOURCE}/{options.name} has no result yet (phase {phase}): kubectl sx wait first")
        if ended.code != Exit.SUCCEEDED:
            raise Failure(f"error: {ended.message}", ended.code)
        self.out.write(results.render(self._result(execution), options.output))
        return Exit.SUCCEEDED

    def logs(self, options: argparse.Namespace) -> int:
        execution = self.cluster.get(options.name)
        while options.follow and options.run is None and not _has_run(execution) and verdict(execution) is None:
            time.sleep(waiting.POLL_SECONDS)  # -f on a pending execution: wait for its first run
            execution = self.cluster.get(options.name)
        index = runlogs.run_index(execution, options.run)
        out = self.out.buffer if hasattr(self.out, "buffer") else None

        def write(chunk: bytes) -> None:
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                self.out.write(chunk.decode("utf-8", "replace"))

        waiting.show_run_log(self.cluster, execution, index, write, follow=options.follow)
        return Exit.SUCCEEDED

    def describe(self, options: argparse.Namespace) -> int:
        execution = self.cluster.get(options.name)
        events = self.cluster.events(execution)
        self.out.write(describing.describe(execution, events, waiting.now()))
        return Exit.SUCCEEDED

    def cancel(self, options: argparse.Namespace) -> int:
        cancelled = self.cluster.cancel(options.name)
        self.out.write(output.render(cancelled, options.output, waiting.now(), verb="cancelled"))
        return Exit.SUCCEEDED


def _has_run(execution: dict[str, Any]) -> bool:
    status = execution.get("status") or {}
    return bool(status.get("currentRun") or status.get("runs"))


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    connect: Callable[[str | None, str | None, str | None], kube.Cluster] = kube.connect,
) -> int:
    options = parser().parse_args(argv)
    try:
        cluster = connect(options.kubeconfig, options.context, options.namespace)
        return int(getattr(Commands(cluster, out, err), options.command)(options))
    except Failure as exc:
        err.write(f"{exc}\n")
        return exc.code
    except (kube.ClusterError, runlogs.RunLogError) as exc:
        text = str(exc)
        err.write((text if text.startswith(("Error", "error:", "Unable")) else f"error: {text}") + "\n")
        return Exit.ERROR
    except specs.SpecError as exc:
        err.write(f"error: {exc}\n")
        return Exit.ERROR
    except KeyboardInterrupt:
        err.write("\n")
        return 130


def entry() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":  # python -m schedexec.sx.main (the krew launcher)
    entry()
