"""Microdata release: k-anonymity, l-diversity and t-closeness by optimal full-domain
generalization (with a suppression limit) or Mondrian partitioning, with risk and utility reports.
"""

from anonymization.microdata.config import MicrodataPolicy, parse_policy
from anonymization.microdata.pseudonyms import agreement_key, pseudonymize
from anonymization.microdata.release import MicrodataResult, anonymize_microdata, load_hierarchies

__all__ = [
    "MicrodataPolicy",
    "MicrodataResult",
    "agreement_key",
    "anonymize_microdata",
    "load_hierarchies",
    "parse_policy",
    "pseudonymize",
]
