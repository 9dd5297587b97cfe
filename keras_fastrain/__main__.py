"""`python -m keras_fastrain ...`: the same as the `keras-fastrain` command."""

import sys

from keras_fastrain.cli import main

sys.exit(main())
