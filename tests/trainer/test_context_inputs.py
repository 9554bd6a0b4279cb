"""Training and conversion feed the context models the same pixels for the same albedo: the
classifier's squashed square and SegFormer's shrunk, wrap-padded image (addon/engine/context.py)."""
import numpy as np
import pytest
import torch

from addon.engine.pipeline import Converter
from trainer import objective
from trainer.contract import UNET_MULTIPLE


class Recording:
    """A model session that records what it is fed."""

    def __init__(self, model, name, fed):
        self.model, self.name, self.fed = model, name, fed
        self.session, self.provider = model.session, model.provider  # the onnxruntime session, as ModelSession

    def run(self, feeds):
        self.fed[self.name] = {k: np.array(v) for k, v in feeds.items()}
        return self.model.run(feeds)


def _diffuse(height, width):
    rng = np.random.default_rng(height * width)
    return rng.random((height, width, 3)).astype(np.float32)


@pytest.mark.parametrize("height, width, seg_hw", [(600, 200, (512, 160)),  # shrunk to a 512 long side
                                                  (128, 256, (128, 256))])  # small enough: not resized
def test_training_and_conversion_feed_the_context_models_the_same_pixels(tiny_models_dir, monkeypatch,
                                                                          height, width, seg_hw):
    converter = Converter(tiny_models_dir, provider="cpu")
    fed, session = {}, converter.session
    monkeypatch.setattr(converter, "session", lambda name: Recording(session(name), name, fed))
    # The context models see the albedo the conversion made, the result's (held in half precision).
    albedo = converter.convert(_diffuse(height, width)).albedo
    assert albedo.shape == (height, width, 3)

    image = torch.from_numpy(albedo.astype(np.float32)).permute(2, 0, 1)[None]
    trained_classifier = objective.classifier_input(image).numpy()
    assert trained_classifier.shape == fed["classifier"]["image"].shape == (1, 3, 224, 224)
    np.testing.assert_allclose(fed["classifier"]["image"], trained_classifier, atol=1e-4)

    seen = []
    logits = objective.segment(lambda x: seen.append(x) or x[:, :1], image)
    padded = tuple(side + 2 * UNET_MULTIPLE for side in seg_hw)  # wrap-padded by one stride per side
    assert seen[0].shape[-2:] == fed["metallic_seg"]["image"].shape[-2:] == padded
    np.testing.assert_allclose(fed["metallic_seg"]["image"], seen[0].numpy(), atol=1e-4)
    assert tuple(logits.shape[-2:]) == seg_hw  # cropped back to the context size
    # The padding is the texture's opposite edge: the input continues across the seam.
    m = UNET_MULTIPLE
    np.testing.assert_array_equal(seen[0][..., :m, m:-m].numpy(), seen[0][..., -2 * m:-m, m:-m].numpy())
