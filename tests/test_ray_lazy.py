"""Issue 14: ``ray`` stays lazy (importing the SDK's Ray code loads no ray) and its absence names the extra.

Runs without ray installed too (it is the check that the rest of the SDK does not need it).
"""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_importing_the_ray_modules_does_not_import_ray():
    out = _run(
        "import sys, sepsis_sdk.scale, sepsis_sdk.evaluation.executor as e, sepsis_sdk.microbench._distributed\n"
        "from sepsis_sdk.scale import RayExecutor, RayActorExecutor, ConcurrencyLimit, DistributedPolicy\n"
        "e.make_executor('ray', address='auto')\n"
        "print('ray' in sys.modules)"
    )
    assert out.strip() == "False"


def test_without_ray_the_error_names_the_extra():
    out = _run(
        "import sys; sys.modules['ray'] = None\n"  # as if not installed
        "from sepsis_sdk.errors import MissingDependencyError\n"
        "from sepsis_sdk.scale import RayExecutor\n"
        "try:\n    RayExecutor().connect()\nexcept MissingDependencyError as exc:\n    print(exc)"
    )
    assert "pip install 'sepsis-sdk[ray]'" in out
