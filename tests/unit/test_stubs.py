"""The committed protobuf and gRPC stubs are exactly what ci/gen-proto makes from proto/ today."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
STUB_DIRS = [Path("src/session_wrapper/rpc"), Path("fakeagent/control")]
STUB_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def stubs_under(root: Path) -> dict[Path, bytes]:
    """Every generated-looking file in the stub folders, by path relative to root."""
    found: dict[Path, bytes] = {}
    for folder in STUB_DIRS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.endswith(STUB_SUFFIXES):
                found[folder / path.name] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, bytes]:
    out = tmp_path_factory.mktemp("gen-proto")
    result = subprocess.run(
        [str(TOP / "ci" / "gen-proto"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return stubs_under(out)


@pytest.mark.timeout(150)
def test_generator_makes_stubs_for_both_protos(generated: dict[Path, bytes]) -> None:
    assert set(generated) == {
        folder / (stem + suffix)
        for folder, stem in [
            (STUB_DIRS[0], "tacacsrs_agent"),
            (STUB_DIRS[1], "fakeagent_control"),
        ]
        for suffix in STUB_SUFFIXES
    }


@pytest.mark.timeout(150)
def test_every_generated_stub_is_committed_byte_for_byte(generated: dict[Path, bytes]) -> None:
    committed = stubs_under(TOP)

    stale = sorted(
        str(path) for path, content in generated.items() if committed.get(path) != content
    )

    assert stale == [], f"committed stubs differ from proto/; run ci/gen-proto: {stale}"


@pytest.mark.timeout(150)
def test_no_committed_stub_lacks_a_generated_twin(generated: dict[Path, bytes]) -> None:
    orphans = sorted(str(path) for path in stubs_under(TOP) if path not in generated)

    assert orphans == [], f"stubs with no .proto behind them: {orphans}"
