"""Shared fixtures of the trainer tests: tiny models, sample data, a report server.

Nothing here touches Django or a database, so the tests run with or without
pytest-django (none of them asks for the ``db`` fixture).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trainer.samples import write_sample_dataset
from trainer.tiny import build_tiny_llm, build_tiny_t2i

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("models") / "tiny-llm")


@pytest.fixture(scope="session")
def tiny_t2i(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_t2i(tmp_path_factory.mktemp("models") / "tiny-t2i")


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training and held-out sets of every sample kind: data["prompts"], data["prompts_val"]."""
    root = tmp_path_factory.mktemp("data")
    sets: dict[str, Path] = {}
    for kind in ("pretrain", "sft_messages", "sft_alpaca", "preference", "prompts"):
        sets[kind] = write_sample_dataset(kind, root / f"{kind}.jsonl", rows=64)
        held_out = root / f"{kind}_val.jsonl"
        sets[f"{kind}_val"] = write_sample_dataset(kind, held_out, rows=16, seed=1)
    sets["t2i"] = write_sample_dataset("t2i", root / "images", rows=16)
    sets["t2i_val"] = write_sample_dataset("t2i", root / "images_val", rows=8, seed=1)
    return sets


def _make_spec(
    tmp_path: Path,
    *,
    algorithm: str,
    scenario: str,
    base_model: Path,
    train: Path,
    validation: Path | None = None,
    test: Path | None = None,
    parameters: dict[str, Any] | None = None,
    report: dict[str, str] | None = None,
) -> Path:
    spec = {
        "job_id": 42,
        "scenario": scenario,
        "algorithm": algorithm,
        "parameters": parameters or {},
        "base_model": str(base_model),
        "train_data": str(train),
        "validation_data": str(validation) if validation else None,
        "test_data": str(test) if test else None,
        "output_dir": str(tmp_path / "output"),
        "report": report,
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    return path


class ReportServer:
    """A real HTTP server in a thread that records what the reporter posts."""

    def __init__(self, port: int = 0, status: int = 200, body: bytes = b"") -> None:
        self.status, self.body = status, body
        self.batches: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.status == 200:
                    outer.batches.append(json.loads(body))
                    outer.headers.append(dict(self.headers))
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/report"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return [m for batch in self.batches for m in batch["metrics"]]

    @property
    def resources(self) -> list[dict[str, Any]]:
        return [r for batch in self.batches for r in batch["resources"]]


@pytest.fixture
def make_spec(tmp_path: Path) -> Any:
    """make_spec(algorithm=..., scenario=..., base_model=..., train=..., ...) -> spec path."""

    def make(**kwargs: Any) -> Path:
        return _make_spec(tmp_path, **kwargs)

    return make


@pytest.fixture
def train(capsys: pytest.CaptureFixture) -> Any:
    """train(spec_path, extra_callbacks=None) -> Outcome of an in-process ``trainer run``."""
    from trainer.runner import run

    def go(spec: Path, extra_callbacks: list[Any] | None = None) -> Outcome:
        status = run(str(spec), extra_callbacks=extra_callbacks)
        out = capsys.readouterr().out
        output = Path(json.loads(spec.read_text())["output_dir"])
        return Outcome(status, out.strip().splitlines(), output)

    return go


class Outcome:
    def __init__(self, status: int, lines: list[str], output: Path) -> None:
        self.status, self.lines, self.output = status, lines, output

    @property
    def last_line(self) -> str:
        return self.lines[-1] if self.lines else ""

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.output / "manifest.json").read_text())

    @property
    def history(self) -> list[dict[str, Any]]:
        return json.loads((self.output / "metrics.json").read_text())["history"]

    def series(self, key: str) -> list[float]:
        return [record[key] for record in self.history if key in record]

    def fell(self, key: str, by: float) -> bool:
        """The mean of the last three logged values is ``by`` (a fraction) below the first three."""
        values = self.series(key)
        first, last = sum(values[:3]) / 3, sum(values[-3:]) / 3
        return len(values) >= 6 and last < first * (1 - by)

    def rose(self, key: str, by: float) -> bool:
        values = self.series(key)
        first, last = sum(values[:3]) / 3, sum(values[-3:]) / 3
        return len(values) >= 6 and last > first + by


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def start_report_server() -> Any:
    """start_report_server(port=0, status=200, body=b"") -> a running ReportServer, stopped
    after the test."""
    servers: list[ReportServer] = []

    def start(port: int = 0, status: int = 200, body: bytes = b"") -> ReportServer:
        servers.append(ReportServer(port, status, body))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def report_server(start_report_server: Any) -> ReportServer:
    return start_report_server()


def version_folder(folder: Path, kind: str, artifacts: dict) -> Path:
    """A model version's folder: its manifest (trainer/output.py) names what it holds."""
    from trainer.output import MANIFEST, write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / MANIFEST,
        {"model_kind": kind, "scenario": "x", "algorithm": "x", "artifacts": artifacts},
    )
    return folder


@pytest.fixture(scope="session")
def llm_version(tiny_llm: Path, tmp_path_factory) -> Path:
    """A version folder as a LoRA SFT run leaves it: a random, non-zero adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("version")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llm))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)  # a fresh adapter adds nothing: make it count
    peft_model.save_pretrained(str(folder / "adapter"))
    AutoTokenizer.from_pretrained(str(tiny_llm)).save_pretrained(str(folder / "adapter"))
    return version_folder(folder, "llm", {"adapter": "adapter", "tokenizer": "adapter"})


@pytest.fixture(scope="session")
def t2i_version(tiny_t2i: Path, tmp_path_factory) -> Path:
    """A text-to-image LoRA version folder: a random, non-zero adapter on the tiny UNet."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(tiny_t2i), safety_checker=None, requires_safety_checker=False
    )
    unet = pipeline.unet
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                   target_modules=["to_k", "to_q", "to_v", "to_out.0"])
    )  # fmt: skip
    with torch.no_grad():
        for name, weight in unet.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    source = tmp_path_factory.mktemp("t2i-version")
    StableDiffusionPipeline.save_lora_weights(
        save_directory=str(source / "adapter"),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        safe_serialization=True,
    )
    return version_folder(source, "t2i", {"adapter": "adapter"})
