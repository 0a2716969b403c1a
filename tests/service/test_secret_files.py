"""Secret files of the offline commands: every byte of a binary key counts, a typed key's line
ending does not, and an unreadable file is an error naming its option."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymization.errors import InvalidRequest
from service.secret_files import read_secret_file


@given(secret=st.binary(min_size=1, max_size=64))
def test_a_binary_key_keeps_every_byte(
    tmp_path_factory: pytest.TempPathFactory, secret: bytes
) -> None:
    path = tmp_path_factory.mktemp("keys") / "secret.key"
    path.write_bytes(secret)
    expected = secret.removesuffix(b"\n").removesuffix(b"\r") if secret.endswith(b"\n") else secret
    assert read_secret_file(path, "--noise-secret-file") == expected


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
def test_a_typed_key_reads_without_its_line_ending(tmp_path: Path, ending: bytes) -> None:
    (tmp_path / "typed.key").write_bytes(b" padded key \t" + ending)
    assert read_secret_file(tmp_path / "typed.key", "--noise-secret-file") == b" padded key \t"


def test_an_unreadable_key_names_its_option(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as error:
        read_secret_file(
            tmp_path / "missing.key", "pseudonym_key", what="key file ", code="key_file"
        )
    assert error.value.field == "pseudonym_key"
    assert error.value.code == "key_file"
    assert "cannot read key file" in error.value.detail
