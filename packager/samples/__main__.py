"""``python -m packager.samples OUT``: write the demo's model, data and video into OUT."""

from packager.samples.digits import main

main()
