"""The learner's loss glue equals the AFSFT loss on full ``[B, T, V]`` tensors of a real (tiny) model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vlmq.algo.afsft import AFSFTConfig, afsft_loss, state_values
from vlmq.models.policy import Policy
from vlmq.models.tiny import save_tiny
from vlmq.train.objective import compute_loss, response_positions


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    base = save_tiny("idefics3", tmp_path_factory.mktemp("tiny"), seed=0)
    pol = Policy.from_pretrained(base, critic_init_std=0.05)
    with torch.no_grad():  # make the target differ from the online critic
        pol.target_head.weight.add_(0.1 * torch.randn_like(pol.target_head.weight))
    return pol


def test_response_positions() -> None:
    m = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    pos, mask = response_positions(m)
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert pos[0].tolist() == [1, 2, 3]
    assert pos[1, 0].item() == 0


def test_compute_loss_matches_full_sequence_reference(policy: Policy) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    prompts = ["Target: 3 Current: 1", "Target: 3 Current: 2", "Target: 3 Current: 3"]
    responses = ['{"action": "+"}', '{"action": "+"}']
    inputs = policy.encode(images[:2], prompts[:2], responses)
    next_inputs = policy.encode(images[1:], prompts[1:])  # turn 1 -> turn 2, turn 2 -> final observation
    batch = SimpleNamespace(
        inputs=inputs,
        next_inputs=next_inputs,
        next_index=torch.tensor([0, 1]),
        has_next=torch.tensor([True, False]),
        rewards=torch.tensor([0.0, 1.0]),
        terminated=torch.tensor([False, True]),
    )
    cfg = AFSFTConfig(gamma=0.8)
    out = compute_loss(policy, batch, cfg, use_target=True)

    with torch.no_grad():
        h = policy.hidden(inputs)
        logits, q, qt = policy.actor_logits(h), policy.critic_q(h), policy.target_q(h)
        hn = policy.hidden(next_inputs)[:, -1]
        v_next = state_values(policy.actor_logits(hn), policy.target_q(hn))
    rm = inputs["response_mask"]
    length = int(rm.sum(1).max())
    sel = {k: torch.zeros(2, length, logits.shape[-1]) for k in ("logits", "q", "qt")}
    actions = torch.zeros(2, length, dtype=torch.long)
    mask = torch.zeros(2, length, dtype=torch.bool)
    for b in range(2):
        for j, p in enumerate(torch.nonzero(rm[b]).flatten().tolist()):
            sel["logits"][b, j], sel["q"][b, j], sel["qt"][b, j] = logits[b, p - 1], q[b, p - 1], qt[b, p - 1]
            actions[b, j] = inputs["input_ids"][b, p]
            mask[b, j] = True
    ref = afsft_loss(sel["logits"], sel["q"], sel["qt"], actions, mask, batch.rewards, batch.terminated,
                     torch.stack([v_next[0], torch.tensor(0.0)]), batch.has_next, cfg)  # fmt: skip
    assert out.critic_loss.item() == pytest.approx(ref.critic_loss.item(), rel=1e-5, abs=1e-6)
    assert out.actor_loss.item() == pytest.approx(ref.actor_loss.item(), rel=1e-5)
    assert out.metrics["tokens"] == ref.metrics["tokens"] == int(rm.sum())

    out.loss.backward()
    grads = [p.grad for p in policy.trainable_parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert policy.target_head.weight.grad is None


def test_plain_sft_skips_the_bootstrap_pass(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``critic_coef`` 0 (filter ``none``) the loss does not depend on ``V'(s_{t+1}^0)``: no
    backbone pass over the next observations, the same loss, and no target diagnostics."""
    import vlmq.train.objective as objective

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(2)]
    prompts = ["Target: 3 Current: 1", "Target: 3 Current: 2"]
    batch = SimpleNamespace(
        inputs=policy.encode(images[:1], prompts[:1], ['{"action": "+"}']),
        next_inputs=policy.encode(images[1:], prompts[1:]),
        next_index=torch.tensor([0]),
        has_next=torch.tensor([True]),
        rewards=torch.tensor([0.0]),
        terminated=torch.tensor([False]),
    )
    sft = AFSFTConfig.for_filter("none")
    with torch.no_grad():
        with_bootstrap = compute_loss(policy, batch, AFSFTConfig.for_filter("none", critic_coef=1e-30))
        calls = []
        real = objective.next_state_values
        monkeypatch.setattr(objective, "next_state_values", lambda *a, **k: calls.append(1) or real(*a, **k))
        out = compute_loss(policy, batch, sft)
        assert not calls
        compute_loss(policy, batch, AFSFTConfig())
        assert calls == [1]
    assert out.loss.item() == pytest.approx(out.actor_loss.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx(with_bootstrap.loss.item(), rel=1e-6)
    assert "td_abs_error" not in out.metrics and "td_abs_error" in with_bootstrap.metrics
    assert out.metrics["tokens"] == with_bootstrap.metrics["tokens"]
