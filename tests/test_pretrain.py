"""Pre-training of the embedded `tiny` model: caption data without actions, a micro run, shipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmq.envs import make
from vlmq.models.hub import EMBEDDED_MODELS
from vlmq.models.pretrain import (
    DOMAINS,
    INFO_FILE,
    MICRO_SIZE,
    Batcher,
    build_tiny_pretrain,
    pretrain_tiny,
    render_scenes,
    scene_captions,
    scene_seeds,
)
from vlmq.models.prompts import parse_agent

PAIRS = [(d, 1_500_000_000 + 7 * i + k) for i in range(6) for k, d in enumerate(DOMAINS)]


def test_captions_never_contain_actions_and_are_deterministic() -> None:
    scenes = render_scenes(PAIRS)
    envs = {s.env_id: make(s.env_id) for s in scenes}
    for s in scenes:
        for q, c in scene_captions(s):
            assert "action" not in (q + c).lower()
            env = envs[s.env_id]
            # a caption is never a valid action of its own domain, raw or through the agent parser
            assert env.parse_env(c) is None, (s.env_id, c)
            assert env.parse_env(parse_agent(c) or "") is None, (s.env_id, c)
            if c.startswith("{"):
                assert "action" not in json.loads(c)
    again = render_scenes(PAIRS)
    assert [scene_captions(s) for s in scenes] == [scene_captions(s) for s in again]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(scenes, again, strict=True))
    assert scene_seeds(50, 3) == scene_seeds(50, 3)
    train = {s for _, s in scene_seeds(200, 0)}
    assert not train & {s for _, s in scene_seeds(200, 0, heldout=True)}


def test_batcher_matches_the_processor() -> None:
    scenes = render_scenes(PAIRS[:5])
    _, proc = build_tiny_pretrain(MICRO_SIZE, [], seed=0)
    batcher = Batcher(proc, scenes)
    q, c = scene_captions(scenes[1])[0]
    batch = batcher.batch([(1, q, c)])
    ref = proc(text=[batcher.prompt_text(q).replace(batcher.image_block, "<image>")],
               images=[[scenes[1].image]], return_tensors="pt")  # fmt: skip
    n = ref["input_ids"].shape[1]
    assert torch.equal(batch["input_ids"][0, :n], ref["input_ids"][0])
    assert torch.allclose(batch["pixel_values"], ref["pixel_values"], atol=1e-5)
    assert (batch["labels"][0, :n] == -100).all() and (batch["labels"][0, n:] >= 0).all()


def test_micro_pretraining_reduces_loss_and_writes_a_loadable_folder(tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from vlmq.models.policy import Policy

    info = pretrain_tiny(tmp_path / "m", steps=30, seed=0, batch_size=8, lr=5e-3, warmup=3,
                         num_scenes=30, num_heldout=5, size=MICRO_SIZE, progress=False)  # fmt: skip
    assert info["final_loss"] < info["first_loss"]
    assert json.loads((tmp_path / "m" / INFO_FILE).read_text())["steps"] == 30
    assert 0.0 <= info["caption_accuracy"]["mean_field"] <= 1.0
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    assert model.config.model_type == "idefics3"
    policy = Policy.from_pretrained(tmp_path / "m")
    assert len(policy.generate([np.zeros((32, 32, 3), np.uint8)], ["hi"], max_new_tokens=3)) == 1


def test_shipped_tiny_loads_offline_and_generates() -> None:
    from vlmq.models.policy import Policy

    folder = EMBEDDED_MODELS["tiny"]
    assert (folder / "model.safetensors").is_file()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 9 * 2**20
    policy = Policy.from_pretrained("tiny")
    assert policy.config.base_model == "tiny" and policy.arch.name == "idefics3"
    obs, _ = make("gym_cards/NumberLine").reset(seed=0)
    (gen,) = policy.generate([obs["image"]], ["What is the target number?"], greedy=True, max_new_tokens=12)
    assert isinstance(gen.text, str) and gen.token_ids


@pytest.mark.parametrize("name", ["tiny"])
def test_embedded_name_is_resolved_in_one_place(name: str) -> None:
    from vlmq.models.hub import resolve_model

    assert Path(resolve_model(name)) == EMBEDDED_MODELS[name]
    assert resolve_model("some/hub-model") == "some/hub-model"
