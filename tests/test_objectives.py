import numpy as np
import pytest
from keras import ops

from dgn.errors import DgnError
from dgn.optvis.objectives import ChannelObjective, ClassObjective, NeuronObjective, parse_target


def outputs_of(logits, **layers):
    out = {"logits": ops.convert_to_tensor(np.asarray(logits, dtype="float32"))}
    out.update({k: ops.convert_to_tensor(np.asarray(v, dtype="float32")) for k, v in layers.items()})
    return out


LOGITS = [[2.0, -1.0, 3.0, 0.5], [-0.5, 4.0, 1.0, -2.0]]


def test_paper_class_loss_matches_hand_computation():
    # loss = -relu(z_t) + lambda * sum_{j != t} relu(z_j), the code's 1 - sum(y_true * y_pred) minus 1
    objective = ClassObjective([(0, 1.0)], activation="relu", others=0.01)
    loss = np.asarray(objective.loss(outputs_of(LOGITS)))
    hand = [-2.0 + 0.01 * (0 + 3.0 + 0.5), -0.0 + 0.01 * (4.0 + 1.0 + 0)]
    np.testing.assert_allclose(loss, hand, rtol=1e-6)
    y_true = np.array([1.0, -0.01, -0.01, -0.01])
    code_loss = 1 - (np.maximum(np.asarray(LOGITS), 0) * y_true).sum(-1)
    np.testing.assert_allclose(loss + 1, code_loss, rtol=1e-6)


def test_dead_gradient_flag_only_for_relu_with_negative_target():
    relu = ClassObjective([(0, 1.0)], activation="relu")
    assert np.asarray(relu.dead(outputs_of(LOGITS))).tolist() == [False, True]
    logit = ClassObjective([(0, 1.0)], activation="logit")
    assert np.asarray(logit.dead(outputs_of(LOGITS))).tolist() == [False, False]


def test_logit_and_logsoftmax_targets():
    z = np.asarray(LOGITS)
    logit = ClassObjective([(1, 1.0)], activation="logit", others=0.0)
    np.testing.assert_allclose(np.asarray(logit.loss(outputs_of(LOGITS))), -z[:, 1], rtol=1e-6)
    logsm = ClassObjective([(1, 1.0)], activation="logsoftmax", others=0.0)
    expected = -(z[:, 1] - np.log(np.exp(z).sum(-1)))
    np.testing.assert_allclose(np.asarray(logsm.loss(outputs_of(LOGITS))), expected, rtol=1e-5)


def test_compound_classes_are_weighted_and_excluded_from_others():
    objective = ClassObjective([(0, 0.7), (2, 0.3)], activation="relu", others=0.1)
    loss = np.asarray(objective.loss(outputs_of(LOGITS)))
    hand = [-(0.7 * 2.0 + 0.3 * 3.0) + 0.1 * (0 + 0.5), -(0 + 0.3 * 1.0) + 0.1 * (4.0 + 0)]
    np.testing.assert_allclose(loss, hand, rtol=1e-6)


def test_channel_neuron_and_composition():
    act = np.arange(2 * 3 * 3 * 4, dtype="float32").reshape(2, 3, 3, 4)
    out = outputs_of(LOGITS, conv=act)
    channel = ChannelObjective("conv", 1)
    np.testing.assert_allclose(np.asarray(channel.value(out)), act[..., 1].mean(axis=(1, 2)))
    neuron = NeuronObjective("conv", 2, 1, 0)
    np.testing.assert_allclose(np.asarray(neuron.value(out)), act[:, 1, 0, 2])
    combo = channel + 0.5 * neuron
    np.testing.assert_allclose(np.asarray(combo.loss(out)),
                               -(act[..., 1].mean(axis=(1, 2)) + 0.5 * act[:, 1, 0, 2]), rtol=1e-6)
    assert combo.layers == ("conv",)
    assert combo.describe()["kind"] == "sum"


class FakeClassifier:
    num_classes = 10
    class_names = [(f"n{i:08d}", name) for i, name in enumerate(
        ["tench", "goldfish", "shark", "crane", "hen", "ray", "cock", "crane", "jay", "owl"])]

    def layer_output(self, name):
        if name != "conv":
            raise DgnError(f"no layer {name}")

        class Tensor:
            shape = (None, 8, 8, 16)
        return Tensor


@pytest.mark.parametrize("spec,kind", [
    ("1", "class"), ("goldfish", "class"), ("n00000001", "class"), ("GoldFish", "class"),
    ("1+2", "classes"), ("0.7*1+0.3*2", "classes"), ("channel:conv:3", "channel"),
    ("neuron:conv:3:2:5", "neuron"), ("1+channel:conv:3", "sum")])
def test_parse_target_kinds(spec, kind):
    assert parse_target(spec, FakeClassifier()).describe()["kind"] == kind


@pytest.mark.parametrize("spec,message", [
    ("10", "out of range"), ("crane", "ambiguous"), ("zebra", "unknown class"),
    ("channel:conv:16", "channels 0..15"), ("channel:nope:1", "no layer"), ("neuron:conv:1:8:0", "positions"),
    ("channel:conv", "expected channel:LAYER:C"), ("x*1", "weight"), ("", "empty target")])
def test_parse_target_errors(spec, message):
    with pytest.raises(DgnError, match=message):
        parse_target(spec, FakeClassifier())
