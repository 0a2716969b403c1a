"""``partage demo load``: the demo's datasets, partners and agreements, registered once.

Running it again finds what exists by name and creates nothing twice. Partner secrets are shown
once by the service, so the loader keeps them in a 0600 file and reuses them; a lost file gives a
new secret (the old one stops working).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from anonymization.errors import InvalidRequest
from service.agreements import service as agreements
from service.agreements.models import Agreement
from service.agreements.schemas import AgreementCreate
from service.auth.deps import Caller
from service.auth.models import SCOPE_ADMIN, OAuthClient
from service.auth.service import rotate_secret
from service.console import check_directory
from service.datasets import service as datasets
from service.datasets.models import Dataset
from service.datasets.schemas import DatasetPolicy
from service.demo import households
from service.keys import write_private_json
from service.partners import service as partners
from service.partners.models import Partner
from service.partners.schemas import PartnerCreate
from service.storage import EncryptedStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "demo"
LOADER = Caller(client_id="partage demo load", scopes=frozenset({SCOPE_ADMIN}), partner_id=None)


@dataclass(frozen=True)
class DemoShare:
    """One dataset shared with one partner under one agreement."""

    dataset: str
    description: str
    file: str
    policy: str
    partner: str
    contact: str
    purpose: str
    # A file made from another demo file by the loader when absent (see households.py).
    derived_from: str | None = None


SHARES = (
    DemoShare(
        dataset="Paiements par carte des visiteurs étrangers",
        description="Card payments of foreign visitors in 2025 (synthetic), shared by a bank",
        file="payments.parquet",
        policy="payments-policy.yaml",
        partner="Office de tourisme",
        contact="data@office-tourisme.example",
        purpose="Foreign visitors' spending by département, month and country of card",
    ),
    DemoShare(
        dataset="Consommation électrique des compteurs communicants",
        description="Daily smart-meter readings in 2025 (synthetic), shared by a distributor",
        file="consumption.parquet",
        policy="consumption-policy.yaml",
        partner="Laboratoire universitaire",
        contact="energie@labo.example",
        purpose="Household electricity consumption by IRIS, month and tariff (research)",
    ),
    DemoShare(
        dataset="Profil annuel des compteurs communicants",
        description="One record per smart meter: annual kWh, contract, heating (synthetic, "
        "derived from the daily readings)",
        file="households.parquet",
        policy="households-policy.yaml",
        partner="Laboratoire universitaire",
        contact="energie@labo.example",
        purpose="Household consumption research on k-anonymous microdata",
        derived_from="consumption.parquet",
    ),
)


def _policy(share: DemoShare) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / share.policy).read_text("utf-8"))
    return document


def _dataset(session: Session, store: EncryptedStore, share: DemoShare, data_dir: Path) -> Dataset:
    found = session.scalars(select(Dataset).where(Dataset.name == share.dataset)).first()
    if found is not None:
        return found
    document = _policy(share)
    hierarchies = document.get("hierarchies", {})
    policy = DatasetPolicy.model_validate(
        {"dataset": document["dataset"], "hierarchies": hierarchies}
    )
    files = {
        PurePath(source).name: (EXAMPLES / source).read_text("utf-8")
        for source in hierarchies.values()
        if isinstance(source, str)
    }
    if share.derived_from and not (data_dir / share.file).is_file():
        households.derive(data_dir / share.derived_from, data_dir / share.file)
    content = (data_dir / share.file).read_bytes()
    return datasets.create(
        session,
        store,
        LOADER.client_id,
        share.dataset,
        share.description,
        policy,
        share.file,
        content,
        files,
    )


def _partner(session: Session, share: DemoShare, saved: dict[str, str]) -> tuple[Partner, str, str]:
    """The partner with a working secret: the saved one, or a new one."""
    found = partners.find_by_name(session, share.partner)
    if found is None:
        partner, client, secret = partners.create(
            session,
            LOADER.client_id,
            PartnerCreate(name=share.partner, contact_email=share.contact),
        )
        return partner, client.client_id, secret
    client = session.scalars(select(OAuthClient).where(OAuthClient.partner_id == found.id)).one()
    if saved.get(client.client_id):
        return found, client.client_id, saved[client.client_id]
    return found, client.client_id, rotate_secret(session, client)


def _agreement(
    session: Session, store: EncryptedStore, share: DemoShare, partner: Partner, dataset: Dataset
) -> Agreement:
    found = session.scalars(
        select(Agreement).where(
            Agreement.partner_id == partner.id, Agreement.dataset_id == dataset.id
        )
    ).first()
    if found is not None:
        return found
    today = datetime.datetime.now(datetime.UTC).date()
    release = _policy(share)["release"]
    # A microdata release has no cells to limit.
    limits = {"extracts_per_month": 100}
    if release.get("kind", "aggregate") == "aggregate":
        limits["max_cells"] = 200_000
    body = AgreementCreate.model_validate(
        {
            "partner_id": partner.id,
            "dataset_id": dataset.id,
            "purpose": share.purpose,
            "legal_basis": "public_task",
            "valid_from": today.replace(month=1, day=1).isoformat(),
            "valid_until": today.replace(year=today.year + 2, month=12, day=31).isoformat(),
            "release": release,
            "limits": limits,
            "retention_days": 30,
        }
    )
    return agreements.create(session, store, LOADER, body)


def read_saved(path: Path) -> dict[str, str]:
    """Saved partner secrets: client_id → secret."""
    if path.is_dir():
        raise InvalidRequest(f"{path} is a directory: give a file name", field="--credentials")
    check_directory(path.parent, "--credentials")
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text("utf-8"))
        return {share["client_id"]: share["client_secret"] for share in saved.values()}
    except OSError as error:
        detail = f"cannot read {path}: {error.strerror}"
        raise InvalidRequest(detail, field="--credentials") from None
    except (ValueError, AttributeError, KeyError, TypeError):
        detail = f"{path} does not hold the demo's saved credentials: give another file"
        raise InvalidRequest(detail, field="--credentials") from None


def write_saved(path: Path, loaded: list[LoadedShare]) -> None:
    """Keep each partner's credentials and agreements, readable by their owner only: its first
    agreement as ``agreement_id`` and ``dataset_id``, and each one under ``agreements`` by kind."""
    saved: dict[str, dict[str, Any]] = {}
    for share in loaded:
        entry = saved.setdefault(share.partner, {**asdict(share), "agreements": {}})
        entry["agreements"][share.kind] = share.agreement_id
    try:
        write_private_json(path, saved)
    except OSError as error:
        detail = f"cannot write {path}: {error.strerror}; nothing was loaded"
        raise InvalidRequest(detail, field="--credentials") from None


@dataclass(frozen=True)
class LoadedShare:
    """What the loader prints for one share."""

    partner: str
    client_id: str
    client_secret: str
    agreement_id: str
    dataset_id: str
    kind: str


def load(
    session: Session, store: EncryptedStore, data_dir: Path, saved: dict[str, str]
) -> list[LoadedShare]:
    """Register every demo share that is not there yet; flush only (the caller commits)."""
    loaded = []
    credentials: dict[str, tuple[Partner, str, str]] = {}
    for share in SHARES:
        dataset = _dataset(session, store, share, data_dir)
        if share.partner not in credentials:
            credentials[share.partner] = _partner(session, share, saved)
        partner, client_id, secret = credentials[share.partner]
        agreement = _agreement(session, store, share, partner, dataset)
        loaded.append(
            LoadedShare(
                share.partner, client_id, secret, str(agreement.id), str(dataset.id), agreement.kind
            )
        )
    session.flush()
    return loaded
