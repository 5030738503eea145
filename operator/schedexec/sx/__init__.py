"""`kubectl sx`: schedexec from a terminal or a CI script, as kubectl's plugin.

`kubectl apply` + `kubectl wait` fall short for scheduled executions: `kubectl wait --for=condition=Finished`
exits 0 when the execution failed, a large result takes three commands and no check of its sha256, and a run's
logs need its Job's name spelled by hand. This package is the `kubectl-sx` console script (kubectl finds any
`kubectl-NAME` executable on PATH as the plugin `kubectl NAME`), built on the official `kubernetes` client.

One module per concern, the pure ones unit-tested without a cluster:
`verdicts` (exit codes per final phase), `progress` (the live line while waiting), `results` (a result read
back from the status or its ConfigMap, checked against size and sha256), `specs` (an execution from flags, a
manifest or an old execution), `describe` and `output` (what is printed), `runlogs` (which Job and pod hold a
run's log); `cluster` is the one module that talks to the API server (and turns its refusals into kubectl's
one-line errors), `waiting` and `commands` wire them, `main` parses the command line.
"""
