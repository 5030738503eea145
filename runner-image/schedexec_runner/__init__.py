"""schedexec runner SDK: write a component, get scheduled executions.

    from schedexec_runner import Component, Schedule

    component = Component("shop")

    @component.model("getCategories")
    def categories(args, ctx):
        return {"1": "Books", "2": "Music"}

The image sets SCHEDEXEC_COMPONENT=mymodule:component and runs
`schedexec-runner`; see docs/runner-contract.md for the contract itself.
"""

from schedexec_runner.component import Component, PollResult, RunContext, RunError, Schedule

__all__ = ["Component", "PollResult", "RunContext", "RunError", "Schedule"]
