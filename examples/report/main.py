"""Parameters keep their declared types in MINITOWER_INPUT: 5, 1.5, true."""

import json
import os

from growth import compound
from tabulate import tabulate

params = json.loads(os.environ["MINITOWER_INPUT"])
table = compound(params["rows"], params["growth"])
style = "github" if params["markdown"] else "simple"
print(tabulate(table, headers=["period", "value"], tablefmt=style))
