import pytest
import torch

from visor.errors import ConfigError
from visor.models import architectures, get_card
from visor.models.architectures.efficientnet_lite import build, checkpoint_filter, same_padding
from visor.models.weights import resolve


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad"),
    [(224, 3, 2, (0, 1)), (224, 5, 2, (1, 2)), (225, 3, 2, (1, 1)), (112, 3, 1, (1, 1)), (7, 1, 1, (0, 0))],
)
def test_tensorflow_same_padding(size, kernel, stride, pad):
    assert same_padding(size, kernel, stride) == pad


def test_lite0_shape_and_parameter_count():
    model = build("efficientnet_lite0").eval()
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
        assert model(torch.zeros(1, 3, 225, 257)).shape == (1, 1000)
        assert model.forward_features(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)
        assert model.forward_head(model.forward_features(torch.zeros(1, 3, 224, 224)), pre_logits=True).shape == (
            1, 1280)


def test_reset_classifier():
    model = build("efficientnet_lite0", num_classes=1000)
    model.reset_classifier(7)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_checkpoint_filter_maps_every_lukemelas_key():
    card = get_card("efficientnet_lite0")
    state = architectures.load_state_dict(resolve(card.weights), "torch")
    mapped = checkpoint_filter(state)
    model_keys = set(build("efficientnet_lite0").state_dict())
    assert set(mapped) == model_keys and len(mapped) == len(state) == 296
    assert checkpoint_filter(mapped).keys() == mapped.keys()  # visor's own names pass through
    with pytest.raises(KeyError):
        checkpoint_filter({"_blocks.0._se_reduce.weight": torch.zeros(1)})


def test_unknown_variant_and_architecture():
    with pytest.raises(ValueError):
        build("efficientnet_lite9")
    with pytest.raises(ConfigError, match="Did you mean 'efficientnet_lite0'"):
        architectures.create("efficientnet_lte0", num_classes=2)
