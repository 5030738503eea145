"""`make demo`: run the shop example's selectModel on the local cluster and print the result.

Expects `make up` to have started the cluster and the operator (KUBECONFIG
and KUBECTL in the environment). Serves the example's shop while the
execution runs: on the real node at the node's address, where the run's pod
reaches it (the manifest's shopUrl is pointed there); on the node-agent tier
on 127.0.0.1:18765, exactly as the manifest says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

from schedexec_devcluster.certs import NODE_IP
from schedexec_devcluster.registry import REGISTRY_HOST

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
import remote_services  # noqa: E402


def kubectl(*args: str, stdin: str | None = None) -> str:
    command = [os.environ.get("KUBECTL") or "kubectl", *args]
    print("$ kubectl " + " ".join(args), flush=True)
    done = subprocess.run(command, input=stdin, capture_output=True, text=True)
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    return done.stdout


def shop_host() -> str:
    """Where pods reach this machine: the real node's address when the API server listens there."""
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    server = urlparse(config["clusters"][0]["cluster"]["server"]).hostname
    return NODE_IP if server == NODE_IP else "127.0.0.1"


def main() -> None:
    host = shop_host()
    server = remote_services.serve(remote_services.Remote(api_key="demo-key"), port=18765, host=host)
    manifest = (REPO / "examples/shop/select-model.yaml").read_text()
    manifest = manifest.replace("http://127.0.0.1:18765", f"http://{host}:18765")
    if host == NODE_IP:  # the real node pulls the project's images from its own registry
        manifest = manifest.replace("ghcr.io/schedexec/", f"{REGISTRY_HOST}/schedexec/")
    try:
        kubectl("apply", "-f", str(REPO / "examples/shop/credentials.yaml"))
        kubectl("delete", "sx", "shop-categories", "--ignore-not-found")
        kubectl("apply", "-f", "-", stdin=manifest)
        kubectl("wait", "--for=condition=Finished", "sx/shop-categories", "--timeout=120s")
        kubectl("get", "sx", "shop-categories")
        result = kubectl("get", "sx", "shop-categories", "-o", "jsonpath={.status.result}")
        print("\nresult:", json.dumps(json.loads(result), indent=2))
    finally:
        server.shutdown()
    print(f"\nThe cluster keeps running: export KUBECONFIG={os.environ['KUBECONFIG']}; `make cluster-down` stops it.")


if __name__ == "__main__":
    main()
