"""names: the VM ID rule (ASCII digits only), here and in the listing built on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import corpus_dir

from swtpm_extcap.errors import UserError
from swtpm_extcap.interfaces.local import discover
from swtpm_extcap.interfaces.lookup import find_interface
from swtpm_extcap.interfaces.settings import Config
from swtpm_extcap.names import is_vm_id

LOG = corpus_dir() / "proxmox-104-qemu-transport-swtpm.log"


@pytest.mark.parametrize("text", ["0", "103", "0103", "999999999"])
def test_ascii_digits_are_vm_ids(text: str) -> None:
    assert is_vm_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\u0661\u0660\u0663",  # Arabic-Indic 103: str.isdigit() and a regex \d say yes
        "\uff11\uff10\uff13",  # fullwidth 103
        "\u0967\u0966\u0969",  # Devanagari 103
        "\u00b9",  # superscript one: isdigit() is True
        "103 ",
        " 103",
        "103\n",
        "-1",
        "1e3",
        "10.3",
    ],
    ids=["empty", "arabic-indic", "fullwidth", "devanagari", "superscript", "space-after",
         "space-before", "newline", "negative", "exponent", "dot"],
)
def test_everything_else_is_not(text: str) -> None:
    assert not is_vm_id(text)


def test_a_proxmox_log_named_in_other_digits_is_no_interface(tmp_path: Path) -> None:
    """The reproducer: ``/run/qemu-server/١٠٣-swtpm.log`` was listed as ``swtpm-١٠٣``."""
    run, conf = tmp_path / "run", tmp_path / "conf"
    run.mkdir()
    conf.mkdir()
    for vmid in ("103", "\u0661\u0660\u0663", "\uff11\uff10\uff14"):
        shutil.copyfile(LOG, run / f"{vmid}-swtpm.log")
        (conf / f"{vmid}.conf").write_text(f"name: vm{vmid}\n")
    found = discover(Config(), proxmox_dir=run, pve_conf_dir=conf, libvirt_dir=tmp_path / "no")
    assert [i.name for i in found] == ["swtpm-103", "swtpm-demo"]
    assert all(i.name.isascii() for i in found)
    with pytest.raises(UserError, match="no interface"):
        find_interface("swtpm-\u0661\u0660\u0663", Config(), proxmox_dir=run, pve_conf_dir=conf,
                       libvirt_dir=tmp_path / "no")
