"""Optimisers: Newton-Schulz orthogonalisation, the Muon/AdamW split, AdamW parity, resumable state."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from hiu_model.config import load_config
from hiu_model.model import HIUDMTL
from hiu_model.optim import MuonAdamW, make_optimizer, orthogonalise


@pytest.mark.parametrize("shape", [(24, 80), (80, 24), (32, 32)])
def test_orthogonalise_keeps_singular_vectors_and_flattens_singular_values(shape: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(0)
    # Singular values spread over three orders of magnitude.
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=generator))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=generator))
    spectrum = torch.logspace(0, -3, min(shape))
    matrix = u @ torch.diag(spectrum) @ v.T
    result = orthogonalise(matrix, steps=5)
    assert result.shape == matrix.shape and result.dtype == matrix.dtype
    singular = torch.linalg.svdvals(result)
    # The largest hundred-fold range of the spectrum ends up near 1.
    assert singular[: min(shape) // 2].min() > 0.6 and singular.max() < 1.25
    # Same singular vectors: the result lies along U V^T (cosine of the flattened matrices).
    ideal = u @ v.T
    cosine = (result * ideal).sum() / (result.norm() * ideal.norm())
    assert cosine > 0.9
    assert torch.equal(orthogonalise(torch.zeros(shape)), torch.zeros(shape))


@pytest.mark.parametrize("shape", [(24, 80), (80, 24)])
def test_orthogonalise_batch_equals_each_matrix_alone(shape: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(2)
    matrices = torch.randn(3, *shape, generator=generator) * torch.tensor([1e-3, 1.0, 50.0])[:, None, None]
    batched = orthogonalise(matrices)
    for matrix, result in zip(matrices, batched):
        torch.testing.assert_close(result, orthogonalise(matrix), rtol=1e-4, atol=1e-5)


def test_muon_step_on_layers_of_one_shape_equals_separate_optimisers() -> None:
    torch.manual_seed(0)
    together = [nn.Linear(16, 8, bias=False) for _ in range(3)]
    apart = [nn.Linear(16, 8, bias=False) for _ in range(3)]
    for mine, other in zip(together, apart):
        other.load_state_dict(mine.state_dict())
    start = [layer.weight.detach().clone() for layer in together]
    joint = MuonAdamW([{"params": [layer.weight for layer in together], "muon": True}], lr=0.05)
    single = [MuonAdamW([{"params": [layer.weight], "muon": True}], lr=0.05) for layer in apart]
    inputs = torch.randn(4, 16)
    for _ in range(3):
        for layers, optimisers in ((together, [joint]), (apart, single)):
            sum(layer(inputs).square().sum() * (k + 1) for k, layer in enumerate(layers)).backward()
            for optimiser in optimisers:
                optimiser.step()
                optimiser.zero_grad()
    for mine, other, initial in zip(together, apart, start):
        assert (mine.weight - initial).abs().max() > 1e-2
        torch.testing.assert_close(mine.weight, other.weight, rtol=1e-4, atol=1e-6)


def test_bf16_iterations_agree_with_float32() -> None:
    matrix = torch.randn(64, 576, generator=torch.Generator().manual_seed(1))
    exact, low = orthogonalise(matrix), orthogonalise(matrix, dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    assert (low - exact).norm() / exact.norm() < 0.05


def test_muon_takes_hidden_weights_and_adamw_the_rest() -> None:
    cfg = load_config(preset="tiny", overrides=["train.optimizer=muon"])
    model = HIUDMTL(cfg.model)
    optimizer = make_optimizer(model, cfg.train)
    assert isinstance(optimizer, MuonAdamW)
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    parameters = list(model.parameters())
    assert len(groups) == len(parameters) == sum(len(g["params"]) for g in optimizer.param_groups)
    boundary = {id(p) for p in model.boundary_parameters()}
    assert id(model.stem.layers[0][0].weight) in boundary and id(model.regressor.mlp[-1].weight) in boundary
    assert len(boundary) == 1 + 3 * cfg.model.num_stacks + 1  # stem, 3 heads per stack, regressor output
    for p in parameters:
        expect_muon = p.ndim >= 2 and id(p) not in boundary
        assert groups[id(p)]["muon"] is expect_muon
        assert groups[id(p)]["weight_decay"] == (cfg.train.weight_decay if p.ndim >= 2 else 0.0)
    plain = make_optimizer(model, load_config(preset="tiny", overrides=["train.optimizer=adamw"]).train)
    assert isinstance(plain, torch.optim.AdamW)


def test_adamw_groups_match_torch_adamw() -> None:
    torch.manual_seed(0)
    reference = nn.Linear(6, 3)
    ours = nn.Linear(6, 3)
    ours.load_state_dict(reference.state_dict())
    theirs = torch.optim.AdamW([{"params": reference.parameters(), "weight_decay": 0.1}], lr=0.01)
    mine = MuonAdamW([{"params": ours.parameters(), "weight_decay": 0.1}], lr=0.01)
    data = torch.randn(16, 6)
    for _ in range(5):
        for model, optimizer in ((reference, theirs), (ours, mine)):
            optimizer.zero_grad()
            (model(data) ** 2).mean().backward()
            optimizer.step()
    for a, b in zip(reference.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_muon_fits_a_linear_map_and_resumes_exactly() -> None:
    torch.manual_seed(0)
    target = torch.randn(8, 12)
    inputs = torch.randn(256, 12)
    total = 200

    def loss_of(layer: nn.Linear) -> torch.Tensor:
        return ((layer(inputs) - inputs @ target.T) ** 2).mean()

    def fit(layer: nn.Linear, optimizer: torch.optim.Optimizer, start: int, stop: int) -> float:
        for step in range(start, stop):
            # Muon's steps have a fixed size: the learning rate must decay to settle.
            optimizer.param_groups[0]["lr"] = 0.1 * (1.0 - step / total)
            optimizer.zero_grad()
            loss = loss_of(layer)
            loss.backward()
            optimizer.step()
        return float(loss_of(layer).detach())

    def fresh() -> tuple[nn.Linear, MuonAdamW]:
        torch.manual_seed(1)
        layer = nn.Linear(12, 8, bias=False)
        return layer, MuonAdamW([{"params": layer.parameters(), "muon": True}], lr=0.1)

    layer, optimizer = fresh()
    start = float(loss_of(layer).detach())
    assert fit(layer, optimizer, 0, total) < start / 100

    # Interrupt after 10 steps, save through weights_only loading, continue: same weights.
    straight, straight_optimizer = fresh()
    fit(straight, straight_optimizer, 0, 20)
    first, first_optimizer = fresh()
    fit(first, first_optimizer, 0, 10)
    buffer = io.BytesIO()
    torch.save({"weights": first.state_dict(), "optimizer": first_optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    second, second_optimizer = fresh()
    second.load_state_dict(saved["weights"])
    second_optimizer.load_state_dict(saved["optimizer"])
    fit(second, second_optimizer, 10, 20)
    assert torch.equal(second.weight, straight.weight)


def test_unknown_optimizer_is_a_config_error() -> None:
    from hiu_model.config import ConfigError

    with pytest.raises(ConfigError, match="train.optimizer: 'sgd' is not one of adamw, muon"):
        load_config(preset="tiny", overrides=["train.optimizer=sgd"])
