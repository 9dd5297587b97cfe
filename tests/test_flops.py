"""Analytic FLOP counts, checked against hand-computed values."""

import keras
import pytest

from keras_fastrain.flops import TRAIN_FLOPS_PER_FORWARD_FLOP, layer_flops, model_costs

pytestmark = pytest.mark.smoke


def baseline_model():
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def test_baseline_recipe_costs_0_61_mflop_per_sample_to_train():
    costs = model_costs(baseline_model())
    assert [(c.kind, c.params) for c in costs] == [
        ("Flatten", 0),
        ("Dense", 784 * 128 + 128),
        ("Dense", 128 * 10 + 10),
    ]
    # multiply-adds + bias + activation, per layer
    assert [c.flops for c in costs] == [0, 2 * 784 * 128 + 128 + 128, 2 * 128 * 10 + 10 + 3 * 10]
    total = sum(c.flops for c in costs) * TRAIN_FLOPS_PER_FORWARD_FLOP
    assert total == 610_680  # DESIGN.md: "about 0.61 MFLOP a sample"


def test_convolution_and_pooling():
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.DepthwiseConv2D(3),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    conv, pool, depthwise, global_pool = (c.flops for c in model_costs(model))
    assert conv == 2 * (26 * 26 * 8) * (3 * 3 * 1) + 26 * 26 * 8 + 26 * 26 * 8
    assert pool == (13 * 13 * 8) * 4
    assert depthwise == 2 * (11 * 11 * 8) * 9
    assert global_pool == 11 * 11 * 8


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(128, activation="relu")
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(self.flatten(x)))


def test_subclassed_model_counts_the_same_as_sequential():
    model = Subclassed()
    model(keras.ops.zeros((2, 28, 28)))
    sequential = [c.flops for c in model_costs(baseline_model())]
    assert [c.flops for c in model_costs(model)] == sequential


def test_nested_models_are_expanded_with_their_path():
    inner = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)], name="inner")
    outer = keras.Sequential([keras.Input((16,)), inner, keras.layers.Dense(2)], name="outer")
    names = [c.name for c in model_costs(outer)]
    assert names[0] == "inner/" + inner.layers[0].name
    assert [c.flops for c in model_costs(outer)] == [2 * 16 * 4 + 4, 2 * 4 * 2 + 2]


def test_recurrent_and_attention_layers():
    lstm = keras.layers.LSTM(5)
    lstm.build((None, 7, 3))
    assert layer_flops(lstm) == 7 * (2 * 4 * 5 * (3 + 5) + 10 * 4 * 5)
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    x = keras.ops.zeros((1, 6, 8))
    attention(x, x)
    projections = 6 * 8 * 2 * 4 * 3 + 6 * 2 * 4 * 8
    scores = 6 * 6 * 2 * (4 + 4)
    assert layer_flops(attention) == 2 * (projections + scores) + 3 * 2 * 6 * 6


class Custom(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],))

    def call(self, x):
        return x * self.w


def test_unknown_layer_with_weights_is_reported_unknown():
    model = keras.Sequential([keras.Input((4,)), Custom(), keras.layers.Dense(2)])
    custom, dense = model_costs(model)
    assert (custom.flops, custom.params) == (None, 4)
    assert dense.flops == 2 * 4 * 2 + 2
