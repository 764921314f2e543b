"""deepline.layers — custom Keras 3 layers written from the maths, backend-agnostic (keras.ops).

Every public layer is registered as ``deepline>ClassName`` for ``.keras`` round trips.
"""

from layers.conv import *  # noqa: F401,F403
from layers.elman import *  # noqa: F401,F403
from layers.ksparse import *  # noqa: F401,F403
from layers.pooling import *  # noqa: F401,F403
