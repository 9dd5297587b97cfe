"""Augmented images per second: ImageDataGenerator against ImageAugmentation.

The classic recipe augments Fashion-MNIST with
`ImageDataGenerator(rotation_range=20, width_shift_range=0.2,
height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
horizontal_flip=True, fill_mode='nearest').flow(x, y, batch_size=32)`, the
legacy per-image Python path. keras-fastrain's `ImageAugmentation` takes the
same arguments and runs batched in a compiled function (`tf.function` on
TensorFlow, `jax.jit` on JAX, eager on torch), on batches already in device
memory, as inside a train step. Both produce the same number of augmented
images in each round; rounds alternate them.

    KERAS_BACKEND=jax python benchmarks/augmentation_throughput.py

Needs TensorFlow installed (ImageDataGenerator lives in `tf.keras`) and
scipy. Prints a table and writes
benchmarks/results/augmentation_throughput_<backend>.json.
"""

import argparse
import statistics
import time

import keras
from common import RESULTS_DIR, save_result

import keras_fastrain
from keras_fastrain import ImageAugmentation
from keras_fastrain.augmentation import CLASSIC_RECIPE

RECIPE = CLASSIC_RECIPE


def compiled_augmentation(layer):
    """Returns `augment(batch)`, compiled as it would be inside a train step."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # jit_compile stays off: XLA cannot compile TensorFlow's image
        # projective transform op.
        return tf.function(lambda batch: layer(batch, training=True))
    if backend == "jax":
        import jax

        state = [v.value for v in layer.non_trainable_variables]

        @jax.jit
        def step(state, batch):
            return layer.stateless_call([], state, batch, training=True)

        def augment(batch):
            nonlocal state
            out, state = step(state, batch)
            return out

        return augment
    return lambda batch: layer(batch, training=True)


def time_image_data_generator(x, y, images, batch_size):
    import tensorflow as tf

    generator = tf.keras.preprocessing.image.ImageDataGenerator(**RECIPE)
    flow = generator.flow(x, y, batch_size=batch_size, shuffle=True, seed=0)
    start = time.perf_counter()
    produced = 0
    while produced < images:
        batch, _ = next(flow)
        produced += len(batch)
    return produced / (time.perf_counter() - start)


def time_image_augmentation(augment, batches):
    start = time.perf_counter()
    for batch in batches:
        out = augment(batch)
    keras.ops.convert_to_numpy(out)  # wait for the device
    return sum(len(batch) for batch in batches) / (time.perf_counter() - start)


def device_batches(x, images, batch_size):
    return [
        keras.ops.convert_to_tensor(x[start : start + batch_size])
        for start in range(0, images, batch_size)
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6400, help="images per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()

    (x, y), _ = keras_fastrain.load_fashion_mnist()
    x = x[:, :, :, None].astype("float32")
    layer = ImageAugmentation(**RECIPE, seed=0)
    layer.build((None, 28, 28, 1))
    augment = compiled_augmentation(layer)
    batches = {size: device_batches(x, args.images, size) for size in (32, 256)}
    for size in batches:  # trace and warm up
        time_image_augmentation(augment, batches[size][:2])

    configurations = {
        "ImageDataGenerator.flow, batch 32": lambda: time_image_data_generator(
            x, y, args.images, 32
        ),
        "ImageAugmentation, batch 32": lambda: time_image_augmentation(augment, batches[32]),
        "ImageAugmentation, batch 256": lambda: time_image_augmentation(augment, batches[256]),
    }
    rates = {name: [] for name in configurations}
    for round_index in range(args.rounds):
        for name, measure in configurations.items():
            rates[name].append(measure())
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)

    base = statistics.median(rates["ImageDataGenerator.flow, batch 32"])
    rows = [
        {
            "configuration": name,
            "images_per_sec": statistics.median(values),
            "speedup": statistics.median(values) / base,
            "rounds": values,
        }
        for name, values in rates.items()
    ]
    width = max(len(row["configuration"]) for row in rows)
    print(f"\n{'configuration':<{width}}  images/s  speed-up")
    for row in rows:
        print(
            f"{row['configuration']:<{width}}  {row['images_per_sec']:>8,.0f}  "
            f"{row['speedup']:>7.1f}x"
        )
    save_result(
        "augmentation_throughput",
        {
            "settings": RECIPE,
            "images_per_measurement": args.images,
            "results": rows,
        },
        args.out_dir,
    )


if __name__ == "__main__":
    main()
