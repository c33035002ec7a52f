"""Generate Python code and type stubs from the contracts in this folder.

Run by `make protos` (and so by `make install`): the generated code lives in
`shared/gen/` (ignored by git), so it can never drift from the .proto files.

The googleapis protos (google/api, google/rpc, google/longrunning, google/type) come from
the `googleapis-common-protos` wheel: they are copied to `build/googleapis/` so that both
protoc and `buf lint` see them without any network registry. Their Python modules are the
wheel's own, so only our `skybridge/...` files are generated.
"""

from __future__ import annotations

import shutil
import site
import sys
import sysconfig
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "shared" / "gen"
GOOGLEAPIS = ROOT / "build" / "googleapis"
GOOGLE_PACKAGES = ("api", "rpc", "longrunning", "type")


def _googleapis_root() -> Path:
    import google.api  # from googleapis-common-protos

    return Path(next(iter(google.api.__path__))).parent.parent


def copy_googleapis() -> None:
    """Copy the googleapis .proto files out of the installed wheel."""
    src = _googleapis_root() / "google"
    if GOOGLEAPIS.exists():
        shutil.rmtree(GOOGLEAPIS)
    for package in GOOGLE_PACKAGES:
        for proto in (src / package).rglob("*.proto"):
            dest = GOOGLEAPIS / "google" / proto.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(proto, dest)


def generate() -> None:
    """Run protoc (from grpcio-tools) over every contract."""
    if GEN.exists():
        shutil.rmtree(GEN)
    GEN.mkdir(parents=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{GOOGLEAPIS}",
        f"-I{well_known}",
        f"--python_out={GEN}",
        f"--pyi_out={GEN}",
        f"--grpc_python_out={GEN}",
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    for folder in GEN.rglob("*"):
        if folder.is_dir():
            (folder / "__init__.py").touch()


def install_path_file() -> None:
    """Put shared/gen on the interpreter's import path (a .pth file in site-packages)."""
    target = Path(sysconfig.get_paths()["purelib"])
    if not target.exists():
        target = Path(site.getsitepackages()[0])
    (target / "skybridge-generated.pth").write_text(f"{GEN}\n")


if __name__ == "__main__":
    copy_googleapis()
    generate()
    install_path_file()
    print(f"generated {sum(1 for _ in GEN.rglob('*_pb2.py'))} modules into {GEN.relative_to(ROOT)}")
