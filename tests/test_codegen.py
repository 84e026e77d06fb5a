"""fastbp.codegen: 512-bit vectors on x86 CPUs with AVX-512, and the user's own choice of target left alone."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from fastbp import codegen

PROBE = textwrap.dedent("""
    import json, os
    import fastbp
    from fastbp.codegen import compiled_target
    from numba.core.codegen import get_host_cpu_features
    print(json.dumps({"env": os.environ.get("NUMBA_CPU_FEATURES"), "compiled_with": compiled_target()[1],
                      "host": get_host_cpu_features()}))
""")


def probe(**env):
    """What a fresh process that imports fastbp compiles with, under the environment changes ``env``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_compiles_for_512_bit_vectors_where_the_cpu_has_avx512():
    seen = probe()
    has_avx512 = "+avx512f" in seen["host"].split(",")
    if not (codegen.X86 and has_avx512):
        assert seen["env"] is None, "only x86 CPUs with AVX-512 get the setting"
        assert seen["compiled_with"] == seen["host"]
        pytest.skip("not an x86 CPU with AVX-512: nothing to change (checked that nothing was)")
    assert seen["compiled_with"] == seen["host"] + "," + codegen.WIDE_VECTORS
    assert seen["env"] == seen["compiled_with"], "child processes (MPI ranks) must compile the same code"


def test_a_target_the_user_chose_is_left_alone():
    chosen = "+sse2,+cx16"
    seen = probe(NUMBA_CPU_FEATURES=chosen)
    assert seen["env"] == chosen
    assert seen["compiled_with"] == chosen


def test_nothing_changes_off_x86(monkeypatch):
    monkeypatch.setattr(codegen, "X86", False)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    codegen.prefer_512_bit_vectors()
    assert "NUMBA_CPU_FEATURES" not in os.environ
