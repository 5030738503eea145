"""The elastic.io runtime's images (issue 29): a Node base from Debian's packages, the component images built
FROM it with the machine's npm configuration (read at build time, never written into the repository)."""

from __future__ import annotations

from schedexec_devcluster import images
from tests.support import REPO


def test_the_npmrc_takes_the_fetching_settings_and_provides_the_ca_file() -> None:
    config = images.npm_build_config(
        {
            "registry": "https://npm.mirror.example/",
            "@acme:registry": "https://acme.example/npm/",
            "cafile": "/etc/ssl/certs/ca-certificates.crt",
            "strict-ssl": True,
            "proxy": None,
            "noproxy": [""],
            "//npm.mirror.example/:_authToken": "t0ken",
            "fund": False,
        },
        exists=lambda path: True,
    )
    assert config.text.splitlines() == [
        "@acme:registry=https://acme.example/npm/",
        "cafile=/etc/xdg/npm/files/0-ca-certificates.crt",
        "registry=https://npm.mirror.example/",
        "strict-ssl=true",
    ]
    assert config.files == (("/etc/ssl/certs/ca-certificates.crt", "files/0-ca-certificates.crt"),)


def test_the_component_images_build_from_the_node_base() -> None:
    machine = images.Machine(
        codename="bookworm",
        architecture="amd64",
        apt_source_files=(("/etc/apt/sources.list", "deb http://deb.example.invalid/debian bookworm main\n"),),
    )
    steps = {step.name: step for step in images.plan_images(REPO, machine)}
    node_base = next(name for name in steps if name.startswith(images.NODE_BASE_REPOSITORY))
    assert steps[node_base].rootfs is not None and "nodejs" in steps[node_base].rootfs.packages
    for name in ("petstore", "splitter"):
        step = steps[f"{images.REGISTRY}/test-elasticio-{name}:dev"]
        assert dict(step.build_args)[images.NODE_BASE_IMAGE_ARG] == node_base
        assert step.parent == node_base
        assert any(entry.path == "component.json" for entry in step.context), "the component's repository"
