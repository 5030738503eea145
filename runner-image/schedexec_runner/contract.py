"""The runner contract: how a run receives its inputs and where it reports.

These names are the whole interface between the schedexec operator and any
component image. The operator sets them on the Job's container; the runner
(or a component in another language that honours docs/runner-contract.md)
reads them. Keeping them in one module means the operator and the runner can
never disagree about a name.
"""

from __future__ import annotations

METHOD = "SCHEDEXEC_METHOD"
"""The method to run: selectModel, getMetaModel, verifyCredentials or a command name."""

MODULE = "SCHEDEXEC_MODULE"
"""The action/trigger the method is about (getMetaModel, selectModel)."""

FUNCTION = "SCHEDEXEC_FUNCTION"
"""The select-model function name (elastic.io's `"model": "getCategories"`)."""

ARGS_FILE = "SCHEDEXEC_ARGS_FILE"
"""Path of a file holding the run's arguments, a JSON object (elastic.io's cfg, XSOAR's args).

A file, not an environment variable: the kernel caps one environment string
at 128 KiB (execve fails with E2BIG), and args may be larger (up to
MAX_ARGS_BYTES)."""

MAX_ARGS_BYTES = 200 * 1024
"""Largest args a run receives: their compact JSON (UTF-8), in bytes. The
operator delivers them in a pod annotation (projected as the args file by a
downwardAPI volume), and Kubernetes caps a pod's annotations at 256 KiB in
total; larger args are refused (REST API: 422) or fail the execution with
reason ArgsTooLarge before any Job is created."""

MAX_RESULT_BYTES = "SCHEDEXEC_MAX_RESULT_BYTES"
"""The largest `done` envelope (its JSON, in bytes) the operator reads from the run's log when it does not
fit the termination message (schedexec_runner.frame); 0 disables the log path. Set by the operator."""

RUN_INDEX = "SCHEDEXEC_RUN_INDEX"
"""1-based index of this run within the execution's sequence."""

EXECUTION = "SCHEDEXEC_EXECUTION"
"""`namespace/name` of the ScheduledExecution, for logs only."""

CREDENTIALS_DIR = "SCHEDEXEC_CREDENTIALS_DIR"
"""Directory holding the credentials Secret, one file per key, mounted read-only."""

CONFIG_KEY = "schedexec.config.json"
"""The credentials Secret key (so the file in CREDENTIALS_DIR) holding a configuration the REST API kept out
of spec.args: elastic.io's `fields`, which carry credentials. Its value is JSON, `{"salt": ..., "args":
{...}}`; a run whose args hold CONFIG_DIGEST with the value's SHA-256 gets `args` merged into its own (the
component sees its cfg as before), and every string in it is redacted like any credential. The salt (random,
or derived from a key only the API holds) keeps the digest from telling anything about the values."""

CONFIG_DIGEST = "schedexec.io/config-sha256"
"""The args key naming the SHA-256 (hex) of the CONFIG_KEY file the run must find: the file is the one the API
made for this execution (a Secret planted under its name by someone else does not match), and the digest is
taken out of the args before the component sees them."""

COMPONENT = "SCHEDEXEC_COMPONENT"
"""`module:attribute` of the component object; set by the component image."""

TERMINATION_LOG = "SCHEDEXEC_TERMINATION_LOG"
"""Where the outcome envelope is written; defaults to the container's terminationMessagePath."""

DEFAULT_CREDENTIALS_DIR = "/var/run/schedexec/credentials"
DEFAULT_ARGS_FILE = "/var/run/schedexec/args/args.json"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"

XSOAR_CONTEXT_FILE = "SCHEDEXEC_XSOAR_CONTEXT_FILE"
"""Path of a JSON object: the XSOAR integration context the previous run of the sequence left (its
schedule envelope's `context`), which the operator keeps in a Secret and mounts read-only, optional: absent
until a run of the execution left one (schedexec_runner.xsoar_native, schedexec.manifests)."""
DEFAULT_XSOAR_CONTEXT_FILE = "/var/run/schedexec/xsoar-context/context.json"

METHOD_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]*$"
"""What a method (command) name looks like: spec.method, and the `command` a schedule names for the
next run. A letter, then letters, digits, `_`, `.`, `:` or `-` (XSOAR's `sandbox-get-report` fits)."""

METHOD_MAX_LENGTH = 253
"""The longest method (command) name."""

SELECT_MODEL = "selectModel"
GET_META_MODEL = "getMetaModel"
VERIFY_CREDENTIALS = "verifyCredentials"

EXIT_REPORTED = 0
"""The run reported an outcome (done, schedule or error) in its envelope."""

EXIT_NOT_REPORTED = 70
"""The runner itself broke and could not write an envelope (EX_SOFTWARE).
The operator treats such a pod like one that died: an infrastructure failure."""
