"""Run by the isolated pycanon venv: print k, l, entropy l and t of a released CSV as JSON.

Usage: python pycanon_check.py released.csv qi1,qi2,... sensitive
"""

import json
import sys

import pandas as pd
from pycanon import anonymity

path, quasi_identifiers, sensitive = sys.argv[1], sys.argv[2].split(","), [sys.argv[3]]
data = pd.read_csv(path, dtype=dict.fromkeys(quasi_identifiers, str))
print(
    json.dumps(
        {
            "k": int(anonymity.k_anonymity(data, quasi_identifiers)),
            "l": int(anonymity.l_diversity(data, quasi_identifiers, sensitive)),
            "entropy_l": int(anonymity.entropy_l_diversity(data, quasi_identifiers, sensitive)),
            "t": float(anonymity.t_closeness(data, quasi_identifiers, sensitive)),
        }
    )
)
