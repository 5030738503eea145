"""The stages of one decision (`schedexec.decisions.decide`), each a few pure functions of a `step.Step`.

A decision walks them in order: begin a sequence (`start.begin`), record the outcome of a run that ended
(`outcome.record`: done, schedule, error, or none), stop what was cancelled or ran past its deadline, fail a
run that is overdue (`finish.fail_if_overdue`), watch a run's pod start (`start.watch`), start the next run
if it is due (`start.if_due`); then plan which Jobs go (`jobs.strays`), when to look again
(`finish.wake_at`) and the conditions (`conditions.set_conditions`). `schedexec.decisions` is the public
entry; these modules are split out so that each stage reads, and is tested, on its own.
"""
