"""schedexec: scheduled executions of component methods on Kubernetes."""
