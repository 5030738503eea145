"""`make demo`: run the shop example's selectModel on the local cluster and print the result.

Expects `make up` to have started the control plane, node agent and operator
(KUBECONFIG and KUBECTL in the environment). Serves the example's shop on
127.0.0.1:18765 while the execution runs, exactly as the manifest expects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
import remote_services  # noqa: E402


def kubectl(*args: str) -> str:
    command = [os.environ.get("KUBECTL") or "kubectl", *args]
    print("$ kubectl " + " ".join(args), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    return done.stdout


def main() -> None:
    server = remote_services.serve(remote_services.Remote(api_key="demo-key"), port=18765)
    try:
        kubectl("apply", "-f", str(REPO / "examples/shop/credentials.yaml"))
        kubectl("delete", "sx", "shop-categories", "--ignore-not-found")
        kubectl("apply", "-f", str(REPO / "examples/shop/select-model.yaml"))
        kubectl("wait", "--for=condition=Finished", "sx/shop-categories", "--timeout=120s")
        kubectl("get", "sx", "shop-categories")
        result = kubectl("get", "sx", "shop-categories", "-o", "jsonpath={.status.result}")
        print("\nresult:", json.dumps(json.loads(result), indent=2))
    finally:
        server.shutdown()
    print(f"\nThe cluster keeps running: export KUBECONFIG={os.environ['KUBECONFIG']}; `make cluster-down` stops it.")


if __name__ == "__main__":
    main()
