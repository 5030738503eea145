"""Local Kubernetes control plane for tests and development.

Test/dev infrastructure, not product code.
"""
