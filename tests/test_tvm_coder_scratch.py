"""The coder kernels' per-task scratch (each kernel module's task_scratch, recorded by `featcomp compile
--coder` because the planned activation memory does not see it) against the allocations in the kernels' own
IR: every buffer allocated inside the parallel loop with a size that is not a constant, its extent evaluated
for this site's slices, the largest slice taken. A scratch buffer added to a kernel without its formula fails."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from test_codec_dctcm import HAND_SITES
from test_codec_tvlc import BANDS
from tvm_tools import need_tvm

ALLOC = re.compile(r'(\w+) = T\.alloc_(?:buffer|local)\(\((.+?),\), "(\w+)"\)')


class _T:
    """What the extents of the kernels' scratch buffers call on T, as plain integer arithmetic."""

    @staticmethod
    def Cast(dtype: str, x: int) -> int:  # noqa: N802  (TVMScript's name)
        return x

    @staticmethod
    def int64(x: int) -> int:
        return x


def ir_task_bytes(func: Any, arrays: dict[str, np.ndarray]) -> int:
    """Bytes of the non-constant buffers allocated inside the kernel's parallel loop, on its largest slice."""
    body = func.script().split("T.parallel(", 1)[1]
    band = [int(v) for v in arrays["band"]]
    names = {"T": _T, "band": band, "nsl": len(band) - 1, "classes": len(arrays.get("hi", [])),
             "c": len(arrays.get("lo", [])), "coded": len(arrays.get("live", [])),
             "ncoded": int(arrays["par"][3]) if "par" in arrays else 0}
    per_slice = []
    for k in range(len(band) - 1):
        total = 0
        for _, extent, dtype in ALLOC.findall(body):
            if not extent.isdigit():
                total += int(eval(extent, {}, {**names, "i": k})) * np.dtype(dtype).itemsize  # noqa: S307
        per_slice.append(total)
    return max(per_slice)


def _rans_site() -> Any:
    from test_tvm_rans_coder import dctcm_rans

    return dctcm_rans("bands3", 2, seed=3)


@pytest.mark.parametrize("which", ["rans", "dctcm", "tvlc"])
def test_task_scratch_is_what_the_kernels_allocate_per_task(which: str) -> None:
    need_tvm()
    from featcomp.runtime_ops.tvm.coder import coder_arrays, kernels_of, task_scratch

    site = {"rans": _rans_site, "dctcm": lambda: HAND_SITES["bands3"], "tvlc": lambda: BANDS}[which]()
    a = coder_arrays(site)
    name, module = kernels_of(site)
    assert name == which
    got = (ir_task_bytes(module.pack_kernel(), a.pack), ir_task_bytes(module.unpack_kernel(), {**a.unpack, **a.pack}))
    scratch = task_scratch(site)
    assert got == (scratch["pack_task_bytes"], scratch["unpack_task_bytes"]) and got[0] > 0
    assert scratch["slices"] == len(a.pack["band"]) - 1 == 3


def test_rans_scratch_is_five_bytes_per_value_of_the_largest_slice() -> None:
    """bands3 (4 x 11 x 600, three coded channels, bands of 4, 4 and 3 rows): 5 x 3 x 4 x 600 bytes, pack
    also 4 bytes per coded channel."""
    need_tvm()
    from featcomp.runtime_ops.tvm.coder import task_scratch

    scratch = task_scratch(_rans_site())
    assert scratch["unpack_task_bytes"] == 5 * 3 * 4 * 600
    assert scratch["pack_task_bytes"] == 5 * 3 * 4 * 600 + 4 * 3
