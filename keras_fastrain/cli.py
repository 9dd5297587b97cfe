"""The `keras-fastrain` command: `demo` runs the demo, `data` prepares Fashion-MNIST.

Errors a user can fix (a missing backend or dataset, a bad option) are printed
as one line, `keras-fastrain: error: ...`, with exit status 2.
"""

import argparse
import sys

from keras_fastrain._version import __version__
from keras_fastrain.backend import missing_backend_error
from keras_fastrain.validation import check_float, check_int

__all__ = ["main"]


def _option(name, convert, check, *bounds):
    """Returns an argparse `type` that converts a string and checks the value."""

    def parse(text):
        try:
            return check(name, convert(text), *bounds)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return parse


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-fastrain",
        description="Make Keras 3 training reach its accuracy sooner.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="train the classic Fashion-MNIST recipe, then the keras-fastrain way",
        description=(
            "Train the classic Keras recipe on Fashion-MNIST, then the "
            "keras-fastrain way; print time to a target test accuracy, final "
            "accuracy and samples/s side by side; save demo.json and demo.png."
        ),
    )
    demo.add_argument(
        "--target",
        type=_option("target", float, check_float, 0, 1, (False, True)),
        default=0.87,
        help="test accuracy to time, in (0, 1] (default: 0.87)",
    )
    demo.add_argument(
        "--epochs",
        type=_option("epochs", int, check_int, 1),
        default=10,
        help="epochs for each side (default: 10)",
    )
    demo.add_argument(
        "--out-dir",
        default="keras-fastrain-demo",
        help="where to save demo.json and demo.png (default: ./keras-fastrain-demo)",
    )
    demo.add_argument(
        "--subset",
        type=_option("subset", int, check_int, 1),
        default=None,
        help="train on the first N training images, for a quick run",
    )
    demo.add_argument(
        "--seed",
        type=_option("seed", int, check_int, 0),
        default=0,
        help="random seed (default: 0)",
    )

    data = commands.add_parser(
        "data",
        help="copy Fashion-MNIST into the Keras cache from a local copy",
        description=(
            "Make Fashion-MNIST load offline: copy Debian's "
            "dataset-fashion-mnist files into the Keras cache. Exit status 1 "
            "when files are still missing."
        ),
    )
    data.add_argument(
        "--source-dir",
        default=None,
        help="folder with the four .gz files (default: /usr/share/datasets/fashion-mnist)",
    )
    return parser


def _run_data(args):
    from keras_fastrain import datasets

    missing = datasets.prepare_fashion_mnist(args.source_dir)
    cache_dir = datasets.fashion_mnist_cache_dir()
    if missing:
        print(
            f"Fashion-MNIST is incomplete in {cache_dir} (missing: "
            f"{', '.join(missing)}): run `apt-get install dataset-fashion-mnist` "
            "and try again."
        )
        return 1
    print(f"Fashion-MNIST is ready in {cache_dir}.")
    return 0


def _run_demo(args):
    from keras_fastrain import demo

    demo.run_demo(
        target=args.target,
        epochs=args.epochs,
        out_dir=args.out_dir,
        subset=args.subset,
        seed=args.seed,
    )
    return 0


def main(argv=None):
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    backend_error = missing_backend_error()
    if backend_error is not None:
        print(f"keras-fastrain: error: {backend_error}", file=sys.stderr)
        return 2
    from keras_fastrain.datasets import DatasetNotFoundError

    run = {"demo": _run_demo, "data": _run_data}[args.command]
    try:
        return run(args)
    except (DatasetNotFoundError, ImportError) as error:
        print(f"keras-fastrain: error: {error}", file=sys.stderr)
        return 2
