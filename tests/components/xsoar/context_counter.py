"""An XSOAR-style integration (demistomock + CommonServerPython, as XSOAR runs it) that caches a token in
the integration context: it "logs in" only when the context holds no token, counts its runs there, and
schedules itself until `runs` runs happened. Its result says how often it logged in, never the token.
tests/cluster/test_xsoar_context.py runs it through the operator to see the context carried between runs."""

import demistomock as demisto
from CommonServerPython import *  # noqa: F403

TOKEN = "ctx-token-5e1f0a9c7b3d"


def main():
    context = get_integration_context()  # noqa: F405
    logins = context.get("logins", 0)
    if "token" not in context:
        logins += 1  # what CAPE does with a username and password: ask the vendor for a token
    runs = context.get("runs", 0) + 1
    set_integration_context({"token": TOKEN, "logins": logins, "runs": runs})  # noqa: F405
    if runs < int(demisto.args()["runs"]):
        scheduled = ScheduledCommand(command=demisto.command(), next_run_in_seconds=1, args=demisto.args())  # noqa: F405
        return_results(CommandResults(readable_output=f"run {runs}", scheduled_command=scheduled))  # noqa: F405
    else:
        return_results({"runs": runs, "logins": logins})  # noqa: F405


if __name__ in ("__main__", "__builtin__", "builtins"):
    main()
