"""Registered datasets: the policy's ``dataset`` block, what the file holds, and its wrapped key."""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin


class Dataset(IdMixin, Base):
    __tablename__ = "dataset"

    name: Mapped[str] = mapped_column(String(200), unique=True)
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
    key_id: Mapped[str | None] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
