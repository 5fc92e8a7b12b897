"""Pre-training of the embedded `tiny` model: caption data without actions, per-field scoring, sizes,
a micro run, resuming, the CLI, shipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmq.envs import make
from vlmq.models import tiny
from vlmq.models.hub import EMBEDDED_MODELS
from vlmq.models.prompts import parse_agent
from vlmq.models.tiny import (
    CHECKPOINT_FILE,
    DOMAINS,
    FIELDS,
    INFO_FILE,
    MICRO_SIZE,
    TINY_SIZE,
    Batcher,
    Scene,
    build_tiny_pretrain,
    describe_json,
    describe_scenes,
    domain_summary,
    heldout_seeds,
    make_size,
    pretrain_tiny,
    render_scenes,
    scene_captions,
    scene_seeds,
    score_descriptions,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Micro models: one thread is the fastest (after conftest's setting) and spares busy cores."""
    torch.set_num_threads(1)


PAIRS = [(d, 1_500_000_000 + 7 * i + k) for i in range(6) for k, d in enumerate(DOMAINS)]
MICRO = dict(batch_size=4, lr=5e-3, warmup=2, num_scenes=20, num_heldout=1, size=MICRO_SIZE, progress=False)


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
    train = {s for seed in (0, 499) for _, s in scene_seeds(200, seed)}
    held = heldout_seeds(50)
    assert len({s for _, s in held}) == len(held) == 50 * len(DOMAINS) and not train & {s for _, s in held}
    assert heldout_seeds(3) == [p for p in held if p[1] % 10_000_000 < 3]


def _scene(domain: str, **facts: object) -> Scene:
    return Scene(domain, "x", 0, np.zeros((4, 4, 3), np.uint8), dict(facts))


def test_blackjack_totals_follow_a_scratchpad_of_running_sums() -> None:
    from vlmq.envs.gym_cards.blackjack import hand_total
    from vlmq.models.tiny.scenes import running_sums

    assert running_sums(["K of spades", "3 of hearts", "A of clubs"]) == "K 10, 3 13, A 14"
    assert running_sums(["A of spades", "A of clubs", "6 of diamonds"]) == "A 1, A 2, 6 8"  # total 18
    shown = _scene("blackjack", dealer=["A of spades", "6 of clubs"], hidden=False, player=["9 of hearts", "Q of clubs"],
                   player_total=19, dealer_total=17)  # fmt: skip
    assert list(json.loads(describe_json(shown))) == [
        "dealer", "player", "dealer_sums", "dealer_total", "player_sums", "player_total"
    ]  # fmt: skip
    assert json.loads(describe_json(shown))["dealer_sums"] == "A 1, 6 7"
    hidden = _scene("blackjack", dealer=["K of spades"], hidden=True, player=["2 of hearts", "A of clubs"],
                    player_total=13, dealer_total=None)  # fmt: skip
    # nothing to add up while a card is face down
    assert "dealer_sums" not in json.loads(describe_json(hidden))
    # on real scenes the last running sum is the hard total the env's total is made from
    for scene in render_scenes(heldout_seeds(20, ["blackjack"])):
        desc = json.loads(describe_json(scene))
        hard = int(desc["player_sums"].split()[-1])
        values = [min(int({"A": 1, "J": 11, "Q": 12, "K": 13}.get(c.split()[0], 0) or c.split()[0]), 10)
                  for c in scene.facts["player"]]  # fmt: skip
        assert hard == sum(values) and desc["player_total"] == hand_total(values)[0]


def test_scoring_covers_exactly_the_target_fields() -> None:
    scenes = render_scenes(heldout_seeds(12))
    acc = score_descriptions(scenes, [describe_json(s) for s in scenes])
    assert {k for k in acc if "/" in k} == {f"{d}/{n}" for d, names in FIELDS.items() for n in names}
    assert all(v == 1.0 for v in acc.values())
    assert all(s["pass"] for s in domain_summary(acc).values())
    assert score_descriptions(scenes, ["not json"] * len(scenes))["json_valid"] == 0.0


def test_scoring_counts_each_card_and_object() -> None:
    bj = _scene("blackjack", dealer=["K of spades"], hidden=True, player=["2 of hearts", "A of clubs"],
                player_total=13, dealer_total=None)  # fmt: skip
    # dealer right (K♠, face down); player: 2♥ right, 3rd card extra (1 rank of 3); total wrong
    pred = {"dealer": ["K of spades", "face down"], "player": ["2 of hearts", "A of spades", "5 of clubs"],
            "dealer_total": None, "player_total": 18}  # fmt: skip
    acc = score_descriptions([bj], [json.dumps(pred)])
    assert acc["blackjack/dealer_rank"] == acc["blackjack/dealer_suit"] == acc["blackjack/hidden"] == 1.0
    assert acc["blackjack/player_rank"] == round(2 / 3, 4) and acc["blackjack/player_suit"] == round(1 / 3, 4)
    assert acc["blackjack/player_total"] == 0.0 and "blackjack/dealer_total" not in acc  # hidden: not scored
    shown = _scene("blackjack", dealer=["K of spades", "9 of clubs"], hidden=False, player=["2 of hearts"],
                   player_total=2, dealer_total=19)  # fmt: skip
    acc = score_descriptions([shown], ['{"dealer": ["K of spades", "face down"], "dealer_total": 19}'])
    assert acc["blackjack/hidden"] == 0.0 and acc["blackjack/dealer_rank"] == 0.5
    assert acc["blackjack/dealer_total"] == 1.0 and acc["blackjack/player_rank"] == 0.0
    room = _scene("babyai", ahead="the red ball", objects=["red ball", "red ball", "blue key"])
    acc = score_descriptions([room], ['{"ahead": "the red ball", "objects": ["red ball", "green box"]}'])
    assert acc["babyai/ahead"] == 1.0 and acc["babyai/objects"] == 0.25  # 1 right of red, red, blue, green
    empty = _scene("babyai", ahead="a wall", objects=[])
    assert score_descriptions([empty], ['{"ahead": "a wall", "objects": []}'])["babyai/objects"] == 1.0
    cards = _scene("points24", cards=["A of spades", "10 of hearts"], values=[1, 10], formula="1 +")
    acc = score_descriptions([cards], ['{"cards": ["A of clubs", "J of hearts"], "formula": "1 +"}'])
    assert acc["points24/rank"] == 0.5 and acc["points24/formula"] == 1.0 and "points24/suit" not in acc
    summary = domain_summary(acc)["points24"]
    assert summary["min"] == 0.5 and summary["worst"] == "rank" and not summary["pass"]


def test_sizes_from_flags_and_json(tmp_path: Path) -> None:
    assert make_size() == TINY_SIZE and make_size() is not TINY_SIZE
    big = make_size(patch=8, vision_width=192, vision_depth=6, text_width=256, text_depth=6)
    assert big["vision"] == dict(
        hidden_size=192, intermediate_size=512, num_hidden_layers=6, num_attention_heads=8
    )
    assert big["text"]["num_attention_heads"] == big["text"]["num_key_value_heads"] == 8
    assert big["text"]["intermediate_size"] == 608 and tiny.image_tokens(big) == 64
    (tmp_path / "info.json").write_text(
        json.dumps({"size": {"image_size": 192, "text": {"num_hidden_layers": 2}}})
    )
    s = make_size(tmp_path / "info.json", sf=3)
    assert (s["image_size"], s["sf"], s["text"]["num_hidden_layers"], s["text"]["hidden_size"]) == (
        192,
        3,
        2,
        160,
    )
    assert make_size('{"patch": 8}')["patch"] == 8
    for bad in (dict(patch=12), dict(sf=3), dict(vision_width=100)):
        with pytest.raises(ValueError):
            make_size(**bad)  # type: ignore[arg-type]


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
                         num_scenes=30, num_heldout=2, size=MICRO_SIZE, progress=False,
                         keep_checkpoint=False)  # fmt: skip
    assert info["final_loss"] < info["first_loss"]
    assert json.loads((tmp_path / "m" / INFO_FILE).read_text())["steps"] == 30
    assert 0.0 <= info["caption_accuracy"]["mean_field"] <= 1.0
    assert info["heldout_scenes"] == {d: 2 for d in DOMAINS} and set(info["caption_pass"]) == set(DOMAINS)
    assert not (tmp_path / "m" / CHECKPOINT_FILE).exists()
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    assert model.config.model_type == "idefics3"
    policy = Policy.from_pretrained(tmp_path / "m")
    assert len(policy.generate([np.zeros((32, 32, 3), np.uint8)], ["hi"], max_new_tokens=3)) == 1


def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    kw = dict(steps=6, seed=1, checkpoint_every=2, eval_every=3, eval_heldout=1, **MICRO)
    whole = pretrain_tiny(tmp_path / "whole", **kw)  # type: ignore[arg-type]
    real, calls = tiny.pretrain.caption_loss, [0]

    def crash_at_step_4(*args: object) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 4:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(tiny.pretrain, "caption_loss", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        pretrain_tiny(tmp_path / "cut", **kw)  # type: ignore[arg-type]
    state = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == 2 and len(state["losses"]) == 2 and not list((tmp_path / "cut").glob(".*tmp"))
    monkeypatch.setattr(tiny.pretrain, "caption_loss", real)
    lines: list[str] = []
    resumed = pretrain_tiny(tmp_path / "cut", log=lines.append, **kw)  # type: ignore[arg-type]
    assert lines[0].startswith("resuming") and "step 2/6" in lines[0]
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("first_loss", "final_loss", "caption_accuracy", "curve"):
        assert resumed[key] == whole[key], key
    assert [c["step"] for c in resumed["curve"]] == [3, 6]
    with pytest.raises(ValueError, match="other settings"):
        pretrain_tiny(tmp_path / "cut", **{**kw, "lr": 1e-3})  # type: ignore[arg-type]


def test_a_larger_steps_extends_a_finished_run(tmp_path: Path) -> None:
    kw = dict(seed=1, checkpoint_every=2, eval_every=2, eval_heldout=1, **MICRO)
    first = pretrain_tiny(tmp_path / "m", steps=4, **kw)  # type: ignore[arg-type]
    lines: list[str] = []
    longer = pretrain_tiny(tmp_path / "m", steps=6, log=lines.append, **kw)  # type: ignore[arg-type]
    assert lines[0].startswith("resuming") and "step 4/6" in lines[0]
    assert first["extended_from"] == [] and longer["extended_from"] == [4] and longer["steps"] == 6
    assert [c["step"] for c in longer["curve"]] == [2, 4, 6] and longer["curve"][:2] == first["curve"]
    assert torch.load(tmp_path / "m" / CHECKPOINT_FILE, weights_only=True)["step"] == 6
    with pytest.raises(ValueError, match="already trained 6 steps"):
        pretrain_tiny(tmp_path / "m", steps=5, **kw)  # type: ignore[arg-type]


def test_batched_descriptions_match_the_policy_path(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vlmq.cli import app
    from vlmq.models.policy import Policy

    pretrain_tiny(tmp_path / "m", steps=12, seed=0, **MICRO)  # type: ignore[arg-type]
    scenes = render_scenes(heldout_seeds(2))
    model, proc = tiny.load_model(tmp_path / "m")
    texts = describe_scenes(model, proc, scenes, batch_size=4, max_new_tokens=24)
    policy = Policy.from_pretrained(tmp_path / "m")
    gens = policy.generate([s.image for s in scenes], [tiny.DESCRIBE_JSON] * len(scenes), greedy=True,
                           max_new_tokens=24)  # fmt: skip
    assert texts == [g.text for g in gens]
    res = CliRunner().invoke(
        app, ["pretrain-tiny", "--eval", "--model", str(tmp_path / "m"), "--scenes", "2"]
    )
    assert res.exit_code == 0, res.output
    for d, names in FIELDS.items():
        assert all(f"{d}/{n}" in res.output for n in names if n != "dealer_total")
    assert "weakest field" in res.output and "not all domains pass" in res.output


def test_cli_trains_resumes_and_reports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vlmq.cli import app

    args = ["pretrain-tiny", "--out", str(tmp_path / "m"), "--steps", "3", "--warmup", "1", "--batch-size", "2",
            "--pool", "6", "--scenes", "1", "--size", json.dumps(MICRO_SIZE), "--patch", "8", "--quiet"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "4 image tokens" in res.output and "numberline/current" in res.output
    info = json.loads((tmp_path / "m" / INFO_FILE).read_text())
    assert info["size"]["patch"] == 8 and info["steps"] == 3 and (tmp_path / "m" / CHECKPOINT_FILE).is_file()
    again = CliRunner().invoke(app, args)  # finished: resumes at the end, writes the same folder
    assert (
        again.exit_code == 0
        and json.loads((tmp_path / "m" / INFO_FILE).read_text())["caption_accuracy"]
        == (info["caption_accuracy"])
    )
    bad = CliRunner().invoke(app, [*args[:-3], "--patch", "12", "--quiet"])
    assert bad.exit_code == 1 and "bad model size" in bad.output


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
