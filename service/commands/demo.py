"""``nas demo`` (``make demo``): the whole product once, end to end, on the shipped digits.

It starts the service (SQLite and a local Ray, in a fresh directory under ``var/demo``, on a
free port), submits ``examples/digits-ofa.yaml`` through the Python client, follows it with a
progress bar, prints the Pareto front of each device, downloads the best subnet under the
first device's budget as ONNX and classifies the whole val split with onnxruntime, beside the
accuracy the job measured (after fine-tuning, where the finetuning stage trained it).
Everything goes through the public REST API, as a user's own script would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from nas.client import FINAL_STATES, Client, ClientError
from service.commands._common import console, fail
from service.commands.client import print_fronts

DEFAULT_EXAMPLE = Path("examples/digits-ofa.yaml")
DEMO_TOKEN = "demo-token-not-for-production"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_service(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        NAS_DATABASE_URL=f"sqlite:///{workdir / 'nas.db'}",
        NAS_ARTIFACT_DIR=str(workdir / "artifacts"),
        NAS_API_TOKENS=json.dumps([DEMO_TOKEN]),
        NAS_HOST="127.0.0.1",
        NAS_PORT=str(port),
    )
    env.pop("NAS_RAY_ADDRESS", None)  # the demo brings its own local Ray
    log = (workdir / "service.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "service"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _wait_healthy(client: Client, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise fail(f"the service exited with code {process.returncode}; see its log")
        try:
            client.health()
            return
        except ClientError:
            time.sleep(0.5)
    raise fail(f"the service did not answer /health within {timeout_s:g} s")


def _watch(client: Client, job_id: int) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]{task.description:<32}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"job {job_id} queued", total=100.0)

        def show(job: dict[str, Any]) -> None:
            where = job["state"] if job["state"] in FINAL_STATES else job["stage"] or job["state"]
            bar.update(task, completed=job["progress"], description=f"job {job_id} {where}")

        return client.watch(job_id, on_progress=show, poll_s=1.0, timeout_s=1800)


def _run_onnx(path: Path, resolution: int, dataset: dict[str, Any], batch: int = 256) -> float:
    """Top-1 (%) of the downloaded ONNX file on the whole val split (onnxruntime)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from nas.data import DatasetSpec, load_dataset, resize_batch

    data = load_dataset(DatasetSpec.model_validate(dataset))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = 0
    for start in range(0, len(data.val), batch):
        items = [data.val[i] for i in range(start, min(start + batch, len(data.val)))]
        images, labels = zip(*items, strict=True)
        x = resize_batch(torch.stack(images), resolution).numpy().astype(np.float32)
        logits = session.run(None, {name: x})[0]
        correct += int((logits.argmax(axis=1) == np.array(labels)).sum())
    return 100.0 * correct / len(data.val)


@contextmanager
def local_service(workdir: Path, timeout_s: float = 120) -> Iterator[Client]:
    """A fresh service (SQLite and a local Ray under ``workdir``, on a free port) and a client
    holding its token; the service is stopped on exit. The demo and the example benchmark use
    it, so both drive the product exactly as a user's script would."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    port = _free_port()
    process = _start_service(workdir.resolve(), port)
    try:
        with Client(f"http://127.0.0.1:{port}", DEMO_TOKEN) as client:
            _wait_healthy(client, process, timeout_s=timeout_s)
            console.print(f"service up on http://127.0.0.1:{port} (log: {workdir}/service.log)")
            yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def demo_command(
    example: Annotated[Path, typer.Option(help="The job file to submit.")] = DEFAULT_EXAMPLE,
    workdir: Annotated[Path, typer.Option(help="Fresh directory for the demo.")] = Path("var/demo"),
) -> None:
    """Start the service, run a whole search on digits, show the fronts, download + run ONNX."""
    if not example.is_file():
        raise fail(f"example: {example} is not a file; the job files are in examples/")
    started = time.monotonic()
    try:
        with local_service(workdir) as client:
            job = client.submit(example)
            console.print(f"submitted {example} as job {job['id']}")
            job = _watch(client, job["id"])
            if job["state"] != "succeeded":
                raise fail(f"job {job['id']} {job['state']}: {job['error']}")
            fronts = client.fronts(job["id"])
            print_fronts(job["id"], fronts)
            chosen = next((f for f in fronts if f["best_subnet_id"] is not None), None)
            if chosen is None:
                raise fail("no front has a best subnet under a budget")
            subnet = client.subnet(chosen["best_subnet_id"])
            path = client.download(subnet["id"], "onnx", workdir)
            console.print(
                f"best subnet on {chosen['device']} under {chosen['budget']}: {subnet['arch_id']}"
                f" -> {path} ({path.stat().st_size} bytes, sha256 verified)"
            )
            accuracy = _run_onnx(path, subnet["resolution"], job["spec"]["dataset"])
            stored, tuned = subnet["measured_accuracy"], subnet.get("finetuned_accuracy")
            # a subnet the finetuning stage trained is exported with its fine-tuned weights
            measured = (
                f"{stored:.2f}% from the supernet"
                if tuned is None
                else f"{tuned:.2f}% after fine-tuning, {stored:.2f}% from the supernet"
            )
            console.print(
                f"onnxruntime top-1 of the downloaded ONNX on the whole val split: "
                f"{accuracy:.2f}% (the job measured {measured})"
            )
    except ClientError as exc:
        raise fail(f"{exc} (HTTP {exc.status})") from None
    console.print(f"demo finished in {time.monotonic() - started:.0f} s")
