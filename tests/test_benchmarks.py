"""benchmarks/trl_peer.py: the ``peer`` section skips (and says why) without TRL; its checks and table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

PEER = Path(__file__).resolve().parents[1] / "benchmarks" / "trl_peer.py"


@pytest.fixture(scope="module")
def trl_peer():
    spec = importlib.util.spec_from_file_location("trl_peer", PEER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_skipped_without_trl(trl_peer, monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError

    def never(*a, **k):
        raise AssertionError("nothing is built when TRL is missing")

    res = trl_peer.bench_peer([object()] * 2, reps=1, sft_loss=never)
    assert "trl is not importable" in res["skipped"] and ".[bench]" in res["skipped"]
    assert res["versions"]["torch"]
    (line,) = trl_peer.peer_markdown(res)
    assert "skipped" in line and "trl is not importable" in line


def test_same_work_ignores_padding_and_catches_differences(trl_peer):
    ids = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 9, 0, 0]])
    attn = (ids != 0).long()
    resp = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    pix = torch.rand(2, 1, 3, 4, 4)
    vlmq = {"input_ids": ids, "attention_mask": attn, "response_mask": resp, "pixel_values": pix}
    labels = ids.masked_fill(~resp, -100)
    # TRL's batch: the same rows, trimmed to its own (shorter) padded length
    trl = {
        "input_ids": ids[:, :4],
        "attention_mask": attn[:, :4],
        "labels": labels[:, :4],
        "pixel_values": pix,
    }
    assert trl_peer._same_work(vlmq, trl) == {"input_ids": True, "loss_positions": True, "pixel_values": True}
    other = {**trl, "input_ids": trl["input_ids"].clone(), "labels": ids[:, :4].clone()}
    other["input_ids"][1, 2] = 4
    other["pixel_values"] = pix + 1
    assert trl_peer._same_work(vlmq, other) == {
        "input_ids": False,
        "loss_positions": False,
        "pixel_values": False,
    }


def test_peer_table(trl_peer):
    p = {
        "model": "tiny", "batch": 8, "tokens_per_batch": 100, "reps": 3,
        "same_work": {"input_ids": True, "loss_positions": True, "pixel_values": False},
        "vlmq_step_s": 1.0, "vlmq_steps_per_s": 1.0, "vlmq_tokens_per_s": 100.0, "vlmq_over_trl": 2.0,
        "vlmq_no_cache_step_s": 1.5, "vlmq_no_cache_steps_per_s": 0.667, "vlmq_no_cache_tokens_per_s": 66.7,
        "vlmq_no_cache_over_trl": 1.333, "trl_step_s": 2.0, "trl_steps_per_s": 0.5, "trl_tokens_per_s": 50.0,
        "versions": {"trl": "1.16.0"}, "vlmq_encode_s": 0.1, "trl_collate_s": 0.2,
    }  # fmt: skip
    text = "\n".join(trl_peer.peer_markdown(p))
    assert "| vlmq plain SFT step (image-feature cache, as it trains) | 1.0 | 1.0 | 100.0 | 2.0 |" in text
    assert "| TRL 1.16.0 SFTTrainer | 2.0 | 0.5 | 50.0 | 1.0 |" in text
    assert "pixel_values DIFFERENT" in text
