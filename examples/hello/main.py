"""The run's input (with the Towerfile's defaults filled in) is MINITOWER_INPUT, as JSON;
each key is also an environment variable of its own (`name`, `count`)."""

import json
import os
import sys

params = json.loads(os.environ["MINITOWER_INPUT"])
name, count = params["name"], params["count"]
for number in range(1, count + 1):
    print(f"hello, {name}! ({number}/{count})")
print(
    f"run {os.environ['MINITOWER_RUN_ID']} of {os.environ['MINITOWER_APP']} "
    f"version {os.environ['MINITOWER_VERSION_NO']} done",
    file=sys.stderr,
)
