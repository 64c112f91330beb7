"""Pair files: round trips, atomic writes, and no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from implosion_base.errors import InputError
from implosion_base.pairs_file import load_pairs, save_pairs


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_round_trip(tmp_path: Path, suffix: str, dtype):
    rng = np.random.default_rng(0)
    t, v = rng.normal(size=(7, 3)).astype(dtype), rng.normal(size=(7, 3)).astype(dtype)
    path = save_pairs(tmp_path / "sub" / f"p{suffix}", t, v)
    t2, v2 = load_pairs(path)
    assert t2.dtype == dtype and np.array_equal(t2, t) and np.array_equal(v2, v)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_failed_write_leaves_no_partial_file(tmp_path: Path):
    target = tmp_path / "p.safetensors"
    with pytest.raises(Exception):
        save_pairs(target, np.ones((2, 2)), np.ones((3, 2, 2)).astype(object))
    assert list(tmp_path.iterdir()) == []


def test_refuses_pickled_arrays(tmp_path: Path):
    path = tmp_path / "evil.npz"
    np.savez(path, text=np.array([object()], dtype=object), image=np.ones((1, 2)))
    with pytest.raises(InputError, match="cannot read"):
        load_pairs(path)


def test_unsupported_suffix(tmp_path: Path):
    with pytest.raises(InputError, match="unsupported file type '.pt'"):
        load_pairs(tmp_path / "weights.pt")


def test_hostile_containers_are_named_before_loading(tmp_path):
    """A .npy renamed .npz, an .npz whose header claims 10^13 floats, a bf16 safetensors file: one InputError each,
    raised before any large allocation."""
    import io
    import zipfile

    import pytest

    from implosion_base.errors import InputError
    from implosion_base.pairs_file import load_pairs

    renamed = tmp_path / "renamed.npz"
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    (tmp_path / "a.npy").rename(renamed)
    with pytest.raises(InputError, match="not an .npz archive"):
        load_pairs(renamed)

    bomb = tmp_path / "bomb.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**6)})
    with zipfile.ZipFile(bomb, "w") as zf:
        zf.writestr("text.npy", buf.getvalue() + b"\\0" * 64)
        zf.writestr("image.npy", buf.getvalue() + b"\\0" * 64)
    with pytest.raises(InputError, match="declares shape"):
        load_pairs(bomb)

    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    bf16 = tmp_path / "bf16.safetensors"
    save_file({"text": torch.ones(3, 2, dtype=torch.bfloat16), "image": torch.ones(3, 2, dtype=torch.bfloat16)},
              str(bf16))
    with pytest.raises(InputError, match="BF16"):
        load_pairs(bf16)
