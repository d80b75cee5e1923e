"""``python -m dpllnn.bench [bench] INSTANCES.csv -o results.csv ...`` (same as ``dpllnn bench``)."""
import sys

from .cli_bench import main

sys.exit(main())
