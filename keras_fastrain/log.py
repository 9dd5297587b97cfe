"""The library's logger, and how keras-fastrain tells users what it decided.

Importing keras-fastrain configures nothing: its logger gets a `NullHandler`
only, so a program's own logging set-up decides where its records go.
What a user should see while training is printed the Keras way, when the
`verbose` argument of the call asks for it.
"""

import logging

import keras

__all__ = ["tell"]

logger = logging.getLogger("keras_fastrain")
logger.addHandler(logging.NullHandler())


def tell(message, verbose=1):
    """Shows `message` to the user when `verbose`, else logs it at DEBUG.

    It is printed as `keras-fastrain: <message>`, or, when Keras's
    interactive logging is off (`keras.config.disable_interactive_logging()`),
    logged at INFO on the `keras_fastrain` logger, as Keras does with its
    own progress output.

    Args:
        message: String.
        verbose: Integer, bool or `"auto"`. `0`/`False` keeps it quiet.
            Defaults to `1`.
    """
    if not verbose:
        logger.debug(message)
    elif keras.config.is_interactive_logging_enabled():
        print(f"keras-fastrain: {message}", flush=True)
    else:
        logger.info(message)
