"""schedexec runner SDK: write a component, get scheduled executions.

    from schedexec_runner import Component, Schedule

    component = Component("shop")

    @component.model("getCategories")
    def categories(args, ctx):
        return {"1": "Books", "2": "Music"}

The image sets SCHEDEXEC_COMPONENT=mymodule:component and runs
`schedexec-runner`; see docs/runner-contract.md for the contract itself.
Commands written for Cortex XSOAR (`polling_function`, `PollResult`,
`CommandResults`, `ScheduledCommand`) import those names from
`schedexec_runner.xsoar` instead of CommonServerPython.
"""

from schedexec_runner.component import Component, Outcome, PollResult, RunContext, RunError, Schedule

__all__ = ["Component", "Outcome", "PollResult", "RunContext", "RunError", "Schedule"]
