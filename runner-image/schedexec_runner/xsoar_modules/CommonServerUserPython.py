"""XSOAR's per-server user code: empty here, as in a fresh XSOAR server (integrations import it with `*`)."""
