"""Registered datasets: the policy's ``dataset`` block, what the file holds, its wrapped key and
noise secret."""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin, NameKeyMixin


class Dataset(NameKeyMixin, IdMixin, Base):
    """A deleted dataset keeps its record, and its name: no other dataset may take it."""

    __tablename__ = "dataset"

    description: Mapped[str | None] = mapped_column(String(2000), default=None)
    # The policy's `dataset` block and custom `hierarchies`, as validated at upload.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    hierarchies: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Text of uploaded ARX hierarchy files, by the file name the hierarchies refer to.
    hierarchy_files: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    file_format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int]
    row_count: Mapped[int]
    columns: Mapped[dict[str, str]] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(80))
    # column → level → distinct labels, counted at upload (the decision estimates cells with it).
    cardinalities: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON, default=dict)
    key_id: Mapped[str | None] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The secret keying the subjects' record keys (consistent noise), wrapped like the data key;
    # datasets registered before it existed get one on first use. Never returned by the API.
    noise_key_id: Mapped[str | None] = mapped_column(String(64), default=None)
    wrapped_noise_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
