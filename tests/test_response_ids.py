"""Model-written turns keep the token ids they sampled, and the learner trains on exactly those ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vlmq.algo.afsft import AFSFTConfig
from vlmq.data.batches import OfflineStream, TurnSample, make_batch, samples_from_rows
from vlmq.data.mix import merge
from vlmq.data.schema import OPTIONAL_COLUMNS, arrow_schema, decode_png
from vlmq.data.store import EpisodeStore
from vlmq.models.policy import Generation, Policy
from vlmq.rollout import collect
from vlmq.train.objective import compute_loss

ENV = "gym_cards/NumberLine"
Steer = Callable[[int, torch.Tensor], torch.Tensor]


@pytest.fixture(scope="module")
def policy(tiny_base: Path) -> Policy:
    torch.manual_seed(0)
    return Policy.from_pretrained(tiny_base)


class Spy:
    """A policy for ``collect`` that records what ``generate`` returned; ``steer(step, logits)``
    edits the logits of each generation step (step 0: the first response token)."""

    def __init__(self, policy: Policy, steer: Steer | None = None) -> None:
        self.policy = policy
        self.config = policy.config
        self.steer = steer
        self.gens: list[Generation] = []

    def generate(self, images: Sequence[np.ndarray], prompts: Sequence[str], **kw: Any) -> list[Generation]:
        step = 0

        def hook(_m: torch.nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            nonlocal step
            out = self.steer(step, out.clone()) if self.steer is not None else out
            step += 1
            return out

        handle = self.policy.lm_head.register_forward_hook(hook)
        try:
            gens = self.policy.generate(images, prompts, **kw)
        finally:
            handle.remove()
        self.gens += gens
        return gens


def _collect(model: Any, out: Path, max_new_tokens: int, episodes: int = 2) -> list[dict[str, Any]]:
    """Model episodes of NumberLine (one env, so turns are stored in ``generate`` call order)."""
    policy = "model" if model is not None else "expert"
    collect(
        ENV, policy, episodes, model=model, num_envs=1, asynchronous=False, temperature=1.0,
        max_new_tokens=max_new_tokens, out=out, show_progress=False, env_kwargs={"max_turns": 2},
    )  # fmt: skip
    return list(EpisodeStore(out).iter_turns())


def _responses(inputs: dict[str, torch.Tensor]) -> list[list[int]]:
    """The response tokens of each row of a training layout."""
    return [ids[m].tolist() for ids, m in zip(inputs["input_ids"], inputs["response_mask"], strict=True)]


def _samples(out: Path) -> list[TurnSample]:
    return samples_from_rows(EpisodeStore(out).iter_turns())


def _turns(samples: Sequence[TurnSample]) -> tuple[list[np.ndarray], list[str]]:
    """Decoded images and prompts of ``samples``."""
    return [decode_png(s.image) for s in samples], [s.prompt for s in samples]


def test_stored_ids_are_the_sampled_ids(policy: Policy, tmp_path: Path) -> None:
    spy = Spy(policy)
    rows = _collect(spy, tmp_path / "ds", max_new_tokens=6)
    assert len(rows) == len(spy.gens) >= 2
    assert [r["response_ids"] for r in rows] == [g.token_ids for g in spy.gens]
    assert [r["response_finished"] for r in rows] == [g.finished for g in spy.gens]
    assert [r["response"] for r in rows] == [g.text for g in spy.gens]
    # the bug: re-tokenising the decoded text does not give the sampled ids back
    retok = [policy.tokenizer(g.text, add_special_tokens=False)["input_ids"] for g in spy.gens]
    assert any(t != g.token_ids for t, g in zip(retok, spy.gens, strict=True))
    samples = _samples(tmp_path / "ds")
    assert _responses(make_batch(policy, samples).inputs) == [s.response_ids for s in samples]


def test_cut_off_generation_is_trained_without_end_of_turn(policy: Policy, tmp_path: Path) -> None:
    stops = policy.stop_token_ids

    def never_stop(_step: int, logits: torch.Tensor) -> torch.Tensor:
        logits[..., stops] -= 1e4
        return logits

    rows = _collect(Spy(policy, never_stop), tmp_path / "ds", max_new_tokens=3)
    assert all(r["response_finished"] is False and len(r["response_ids"]) == 3 for r in rows)
    samples = _samples(tmp_path / "ds")
    batch = make_batch(policy, samples)
    inputs = batch.inputs
    assert _responses(inputs) == [s.response_ids for s in samples]  # exactly the sampled ids ...
    assert inputs["response_mask"].sum(1).tolist() == [3] * len(samples)  # ... and nothing else
    assert not any(set(r) & set(stops) for r in _responses(inputs))
    # the last real token of every row is the last sampled id (no end-of-turn token after it)
    last = inputs["input_ids"][torch.arange(len(samples)), inputs["attention_mask"].sum(1) - 1]
    assert last.tolist() == [s.response_ids[-1] for s in samples]  # type: ignore[index]
    # the prompt tokens are those of the text path
    text = policy.encode(*_turns(samples), [s.response for s in samples])
    for b, s in enumerate(samples):
        n = int(inputs["attention_mask"][b].sum()) - len(s.response_ids)  # type: ignore[arg-type]
        assert inputs["input_ids"][b, :n].tolist() == text["input_ids"][b, :n].tolist()
        assert not bool(text["response_mask"][b, :n].any())
    assert torch.isfinite(compute_loss(policy, batch, AFSFTConfig()).loss)


def test_finished_generation_keeps_its_stop_token_once(policy: Policy, tmp_path: Path) -> None:
    eot = policy.eot_token_id

    def stop_third(step: int, logits: torch.Tensor) -> torch.Tensor:
        logits[..., eot] += 1e4 if step == 2 else -1e4
        return logits

    rows = _collect(Spy(policy, stop_third), tmp_path / "ds", max_new_tokens=6)
    assert all(r["response_finished"] is True and len(r["response_ids"]) == 3 for r in rows)
    assert all(r["response_ids"][-1] == eot for r in rows)
    samples = _samples(tmp_path / "ds")
    batch = make_batch(policy, samples)
    responses = _responses(batch.inputs)
    assert responses == [s.response_ids for s in samples]
    assert all(r.count(eot) == 1 and r[-1] == eot for r in responses)
    assert torch.isfinite(compute_loss(policy, batch, AFSFTConfig()).loss)


def test_scripted_turns_encode_as_before(policy: Policy, tmp_path: Path) -> None:
    rows = _collect(None, tmp_path / "ds", max_new_tokens=6)
    assert all(r["response_ids"] is None and r["response_finished"] is None for r in rows)
    samples = _samples(tmp_path / "ds")
    tok = policy.tokenizer
    eot = policy.eot_token_id
    expected = [[*tok(s.response, add_special_tokens=False)["input_ids"], eot] for s in samples]
    assert _responses(make_batch(policy, samples).inputs) == expected
    # in a batch mixed with sampled ids, a text row is tokenised exactly as in a text-only batch
    images, prompts = _turns(samples[:2])
    responses = [s.response for s in samples[:2]]
    old = policy.encode(images, prompts, responses)
    mixed = policy.encode(images, prompts, responses, response_ids=[None, [7, 8]])
    n = int(old["attention_mask"][0].sum())
    assert mixed["input_ids"][0, :n].tolist() == old["input_ids"][0, :n].tolist()
    assert mixed["response_mask"][0, :n].tolist() == old["response_mask"][0, :n].tolist()
    assert _responses(mixed) == [expected[0], [7, 8]]


def test_old_format_shard_loads_and_trains(policy: Policy, tmp_path: Path) -> None:
    _collect(Spy(policy), tmp_path / "ds", max_new_tokens=4)
    shard = EpisodeStore(tmp_path / "ds").shards()[0]
    old = pq.read_table(shard).drop_columns(list(OPTIONAL_COLUMNS))
    pq.write_table(old.replace_schema_metadata({b"vlmq.schema_version": b"1"}), shard)  # as version 1 wrote
    store = EpisodeStore(tmp_path / "ds")
    assert all(t.response_ids is None for e in store.iter_episodes() for t in e.turns)
    assert store.to_hf()["response_ids"] == [None] * store.num_turns
    batch = make_batch(policy, OfflineStream(store).take(3))
    tok, eot = policy.tokenizer, policy.eot_token_id
    samples = _samples(tmp_path / "ds")
    assert all(s.response_ids is None for s in samples)
    texts = {(*tok(s.response, add_special_tokens=False)["input_ids"], eot) for s in samples}
    assert {tuple(r) for r in _responses(batch.inputs)} <= texts  # the text path
    loss = compute_loss(policy, batch, AFSFTConfig()).loss
    loss.backward()
    grads = [p.grad for p in policy.trainable_parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    policy.zero_grad(set_to_none=True)
    # a copy of the old store is written with the full schema, the new columns null
    merged = merge(tmp_path / "merged", [tmp_path / "ds"])
    assert pq.read_schema(merged.shards()[0]).equals(arrow_schema(), check_metadata=False)
    assert all(r["response_ids"] is None for r in merged.iter_turns(["response_ids"]))


def test_generation_never_samples_an_image_placeholder(policy: Policy) -> None:
    holders = policy.placeholder_token_ids
    assert holders  # Idefics3's <image>

    def favour_image(_step: int, logits: torch.Tensor) -> torch.Tensor:
        logits[..., holders] += 1e4
        return logits

    spy = Spy(policy, favour_image)
    images = [np.full((32, 32, 3), 100, dtype=np.uint8)] * 2
    gens = spy.generate(images, ["go", "left"], temperature=1.0, max_new_tokens=4, seed=0)
    assert all(len(g.token_ids) == 4 and not set(g.token_ids) & set(holders) for g in gens)
    with pytest.raises(ValueError, match="image placeholders"):
        policy.encode(images[:1], ["go"], ["x"], response_ids=[[7, holders[0]]])
