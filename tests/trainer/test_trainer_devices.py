import sys
import types

import pytest
import torch

from trainer import devices


@pytest.fixture
def no_mlu(monkeypatch):
    real_import = devices.importlib.import_module

    def fake_import(name, *args):
        if name == "torch_mlu":
            raise ImportError("no torch_mlu here")
        return real_import(name, *args)

    monkeypatch.setattr(devices.importlib, "import_module", fake_import)


def test_it_picks_mlu_with_cncl_when_torch_mlu_imports(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_mlu", types.ModuleType("torch_mlu"))
    fake_mlu = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 8)
    monkeypatch.setattr(torch, "mlu", fake_mlu, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.detect_device() == devices.DeviceInfo("mlu", "cncl", 8)


def test_it_picks_cuda_with_nccl_without_mlu(monkeypatch, no_mlu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.detect_device() == devices.DeviceInfo("cuda", "nccl", 2)


def test_it_falls_back_to_cpu_with_gloo(monkeypatch, no_mlu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.detect_device() == devices.DeviceInfo("cpu", "gloo", 1)


def test_a_broken_torch_mlu_install_does_not_stop_a_cpu_run(monkeypatch):
    broken = types.ModuleType("torch_mlu")
    monkeypatch.setitem(sys.modules, "torch_mlu", broken)
    monkeypatch.setattr(
        torch, "mlu", types.SimpleNamespace(is_available=lambda: False), raising=False
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.detect_device().kind == "cpu"


def test_it_reads_rank_information_from_the_torchrun_environment():
    env = {
        "RANK": "3",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "job-0.svc",
        "MASTER_PORT": "29500",
        "NNODES": "4",
        "NODE_RANK": "1",
    }
    info = devices.distributed_from_env(env)
    ranks = (info.rank, info.world_size, info.local_rank, info.node_rank, info.nnodes)
    assert ranks == (3, 8, 1, 1, 4)
    assert (info.master_addr, info.master_port) == ("job-0.svc", 29500)
    assert info.is_distributed and not info.is_main


def test_it_is_a_single_process_without_those_variables():
    info = devices.distributed_from_env({})
    assert info == devices.DistributedInfo()
    assert info.is_main and not info.is_distributed


def test_it_refuses_an_inconsistent_rank():
    with pytest.raises(ValueError, match="RANK=4"):
        devices.distributed_from_env({"RANK": "4", "WORLD_SIZE": "2"})
