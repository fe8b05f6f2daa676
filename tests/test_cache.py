"""``toolkit.cache``: keys, the process memo and the files of the cache folder (the pipeline's models
and data are tested through the pipeline in test_model.py, test_shipped.py and test_portable.py)."""

from __future__ import annotations

import hashlib

import torch

from toolkit import cache


def test_a_key_hashes_its_parts_in_order_text_bytes_and_tensors_alike():
    t = torch.arange(4)
    want = hashlib.sha256(b"settings" + b"\x00\x01" + t.numpy().tobytes()).hexdigest()[:20]
    assert cache.key("settings", b"\x00\x01", t) == want
    assert cache.key(b"\x00\x01", "settings", t) != want


def test_the_memo_builds_once_and_hands_out_copies(monkeypatch):
    monkeypatch.setattr(cache, "_MEMO", {})
    builds = []
    first = cache.memo(("test", 1), lambda: builds.append(1) or {"words": [1, 2]})
    first["words"].append(3)  # a caller's changes stay its own
    assert cache.memo(("test", 1), lambda: builds.append(1) or {}) == {"words": [1, 2]} and builds == [1]


def test_stored_builds_once_then_loads_from_the_folder(tmp_path):
    store = cache.Cache(tmp_path)
    for name, value in (("data-x.pt", {"ids": torch.arange(3)}), ("dial-x.json", {"chat": {"Answer": 0.5}})):
        assert str(store.stored(name, lambda: value)) == str(value)
        again = store.stored(name, lambda: (_ for _ in ()).throw(AssertionError("built twice")))
        assert str(again) == str(value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data-x.pt", "dial-x.json"]  # no temporary file left


def test_a_folder_that_cannot_be_written_only_costs_time(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert cache.Cache(blocked / "cache").stored("data-x.pt", lambda: [1, 2]) == [1, 2]


def test_a_model_is_made_once_and_then_found(tmp_path):
    store = cache.Cache(tmp_path, shipped=False)
    assert store.model("base-test.pt", lambda: {"curve": [1.0]}) is None  # made, and saved
    path, where, state = store.model("base-test.pt", lambda: {"curve": [2.0]})
    assert (path, where, state) == (tmp_path / "base-test.pt", "from cache", {"curve": [1.0]})
    made = []
    assert store.model(None, lambda: made.append(1) or {"curve": [3.0]}) is None and made == [1]  # kept nowhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base-test.lock", "base-test.pt"]
